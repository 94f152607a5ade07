"""lite v2, lever 3: an alignment head (models/lite/head.py) trained across every captioned
CC0 picture that ships, judged on categories and captions it never saw, against ConSE alone and
against what lite-v2 ships.

    python benchmarks/lite_v2_head.py [--threads 2]

Training pairs: the reference bank of benchmarks/lite_v2.py (Noto emoji of the train split with
their English and CLDR Hindi names, openclipart drawings of the train split in the non-reported
categories), image = lite's ConSE vector, text = the caption's query vector. Loss: symmetric
InfoNCE over batches, plus a photo anchor: on the 34 Debian wallpapers (no labels) the head is
pulled towards leaving ConSE alone, ||head(v) - v||^2 times `anchor`.
The recipe (epochs, anchor weight) is chosen leave-category-out: three of the bank's clip-art
categories and a fifth of its emoji captions are held out of fitting and the recipe with the best
recall there wins (and, photo-safe, the best among recipes that keep the wallpapers within
cosine PHOTO_COSINE of ConSE); each is then refitted on the whole bank and reported on the held-out
sets of lite_v2.py, where the ship rule applies: only if it beats ConSE on the held-out
clip-art categories (a domain it never saw) and keeps the photos. Rows also show the head only
where the bank's floor is passed (photos keep ConSE), with routing and the bank on top. Only one
view per picture (the cached logits): no augmentation.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from dataclasses import replace

import numpy as np
import torch

from lite_v2 import (
    HEADER,
    Bench,
    Lever,
    Model,
    Shipped,
    evaluate,
    photo_floor,
    row,
    unit,
)
from lite_v2_data import colour_shares, v2_sets
from xmodal.models.lite.bank import visual_view
from xmodal.models.lite.head import AlignmentHead

GRID = [(epochs, anchor) for epochs in (5, 15, 40) for anchor in (0.0, 1.0, 10.0)]
TEMPERATURE = 0.05
PHOTO_COSINE = 0.95


class Headed(Model):
    """A lever setting with a trained head on its ConSE vectors (texts untouched). gated: only
    pictures that look like the bank (nearest bank cosine above the photo-safe floor) get the
    head, so photos keep ConSE; a bank lever then adds its borrowed captions on top."""

    def __init__(
        self, bench: Bench, head: AlignmentHead, lever: Lever, gated: bool = False, paper=False
    ):
        super().__init__(bench, lever)
        self.head, self.gated, self.paper = head, gated, paper

    def images(self, set_name: str) -> np.ndarray:
        plain = Model(self.b, replace(self.lever, lend=0.0)).images(set_name).astype(np.float32)
        with torch.inference_mode():
            v = self.head(torch.from_numpy(plain)).numpy()
        if self.gated:
            keep = self.b.bank_keep
            near = visual_view(self.b.feats[set_name]) @ visual_view(self.b.feats["bank"][keep]).T
            v = np.where(near.max(axis=1, keepdims=True) > self.lever_floor(), v, plain)
        if self.paper:  # only pictures on a white ground (all four edges near-white)
            v = np.where(colour_shares(self.b.sets[set_name])[:, -1:] > 0, v, plain)
        if self.lever.lend and set_name != "bank":
            v = unit(v + self.lever.lend * self._lent(set_name))
        return v

    def lever_floor(self) -> float:
        return self.lever.lend_floor if self.lever.lend else photo_floor(self.b)


def pairs(m: Model) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """(image vectors, text vectors, caption, category) per training pair: every bank picture
    with its English caption, and the emoji again with their Hindi names."""
    keep = m.b.bank_keep
    items = [x for x, k in zip(m.b.sets["bank"], keep) if k]
    images = m.images("bank")[keep]
    texts = [x.caption for x in items] + [x.hindi for x in items if x.hindi]
    index = list(range(len(items))) + [i for i, x in enumerate(items) if x.hindi]
    captions = [items[i].caption for i in index]
    categories = [items[i].category for i in index]
    as32 = lambda a: np.ascontiguousarray(a, np.float32)  # noqa: E731
    return as32(images[index]), as32(m.texts(texts)), captions, categories


def fit(img, txt, anchor_vecs, epochs: int, anchor: float, seed: int = 0) -> AlignmentHead:
    torch.manual_seed(seed)
    head = AlignmentHead(img.shape[1], hidden=512)
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=1e-4)
    x, t = torch.from_numpy(img), torch.from_numpy(txt)
    photos = torch.from_numpy(anchor_vecs)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        for batch in np.array_split(rng.permutation(len(x)), max(1, len(x) // 256)):
            b = torch.from_numpy(batch)
            logits = head(x[b]) @ t[b].T / TEMPERATURE
            target = torch.arange(len(b))
            loss = (
                torch.nn.functional.cross_entropy(logits, target)
                + torch.nn.functional.cross_entropy(logits.T, target)
            ) / 2
            if anchor:
                loss = loss + anchor * (head(photos) - photos).pow(2).sum(dim=1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return head.eval()


def photo_cosine(head: AlignmentHead, photos: np.ndarray) -> float:
    """Mean cosine between the head's and ConSE's vectors of the wallpapers."""
    with torch.inference_mode():
        return float((head(torch.from_numpy(photos)).numpy() * photos).sum(axis=1).mean())


def recall_at_10(head: AlignmentHead, img, txt, captions) -> float:
    with torch.inference_mode():
        v = head(torch.from_numpy(img)).numpy()
    sim = txt @ v.T
    truth = np.asarray(captions)
    order = np.argsort(-sim, axis=1)[:, :10]
    return float(np.mean([(truth[o] == c).any() for o, c in zip(order, captions)]))


def _held(caption: str) -> bool:
    return hashlib.blake2b(f"head-val:{caption}".encode(), digest_size=8).digest()[0] < 51


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    t0 = time.perf_counter()
    torch.set_num_threads(args.threads)
    sets = v2_sets(500)
    bench = Bench(sets, args.threads)
    v1 = bench.model(Lever())
    img, txt, captions, categories = pairs(v1)
    anchor_vecs = v1.images("wallpapers").astype(np.float32)
    drawn = sorted({c for c in categories if not c.startswith("U+")})
    val_cats = set(drawn[:: max(1, len(drawn) // 3)][:3])
    val = np.array(
        [
            c in val_cats or (c.startswith("U+") and _held(cap))
            for c, cap in zip(categories, captions)
        ]
    )
    print(f"pairs {len(img)}; validation: categories {sorted(val_cats)} + emoji, {int(val.sum())}")
    base = recall_at_10(
        AlignmentHead(img.shape[1]), img[val], txt[val], list(np.array(captions)[val])
    )
    scored = []
    for epochs, anchor in GRID:
        head = fit(img[~val], txt[~val], anchor_vecs, epochs, anchor)
        r = recall_at_10(head, img[val], txt[val], list(np.array(captions)[val]))
        kept = photo_cosine(head, anchor_vecs)
        scored.append((r, kept, epochs, anchor))
        print(
            f"  epochs {epochs:3} anchor {anchor:5g}: validation R@10 {100 * r:.1f} "
            f"(ConSE {100 * base:.1f}); wallpapers' cosine to ConSE {kept:.3f}"
        )
    _, _, epochs, anchor = max(scored)
    head = fit(img, txt, anchor_vecs, epochs, anchor)
    # Photo-safe: the best validation among recipes that leave the wallpapers (real photos, no
    # labels) within PHOTO_COSINE of ConSE, the head's counterpart of the bank's floor.
    safe = [s for s in scored if s[1] >= PHOTO_COSINE] or [max(scored, key=lambda s: s[1])]
    _, _, safe_epochs, safe_anchor = max(safe)
    safe_head = fit(img, txt, anchor_vecs, safe_epochs, safe_anchor)
    print(
        f"\nchosen: epochs {epochs}, anchor {anchor:g}; photo-safe (wallpapers >= "
        f"{PHOTO_COSINE}): epochs {safe_epochs}, anchor {safe_anchor:g}; refitted on all "
        f"{len(img)} pairs"
    )
    print(f"\nheld-out sets (R@1/5/10, %)\n{HEADER}")
    shipped = Lever(route=True, lend=8.0, lend_k=5, lend_floor=photo_floor(bench), lend_mode="mean")
    for label, m in [
        ("v1 (lite, ConSE alone)", v1),
        (f"head (epochs {epochs}, anchor {anchor:g})", Headed(bench, head, Lever())),
        (
            f"photo-safe head (epochs {safe_epochs}, anchor {safe_anchor:g})",
            Headed(bench, safe_head, Lever()),
        ),
        ("head, gated like the bank", Headed(bench, head, Lever(), gated=True)),
        ("route + gated head + bank", Headed(bench, head, shipped, gated=True)),
        ("route + photo-safe head + bank", Headed(bench, safe_head, shipped)),
        ("head on white ground", Headed(bench, head, Lever(), paper=True)),
        ("route + head on white ground + bank", Headed(bench, head, shipped, paper=True)),
        ("lite-v2 (shipped)", Shipped(bench, "lite-v2")),
    ]:
        print(row(label, evaluate(m)))
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
