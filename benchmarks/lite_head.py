"""Train and judge lite's alignment head (models/lite/head.py) on the clip art and emoji that ship.

    python benchmarks/lite_head.py [--threads 2] [--ship]

Data: openclipart-png drawings and Noto emoji, captioned and split by caption (samples.split_of:
no test caption is ever trained on), the 14 sample photos (zero-shot against their labels +
distractors, as benchmarks/zeroshot_photos.py) and the Adwaita icons as a third drawn domain no
head trains on. Every image is run through the image tower once per view and the logits cached
in benchmarks/out/cache (view 0 = what `lite` embeds: transparency on white, padded to a square;
view 1 = the centre crop; views 2.. = augmentations: crops, flips, colour, backgrounds); text
vectors are cached too. A rerun then trains and scores every head in seconds.

Protocol, for each text-tower set (lite-en, lite) and each direction (train on one domain):
  1. choose the recipe on the training domain's train split alone: whole categories are held
     out of fitting (a stand-in for an unseen domain) and the recipe with the best recall@10
     there wins; nothing reported in the final tables takes part in the choice;
  2. retrain that recipe on the whole train split and report text->image R@1/5/10 on
     (a) the other domain, all of it, (b) the same domain's test split, (c) photo zero-shot,
     (d) the icons, each next to ConSE alone (the untrained head).
Levers (recipes()): augmentation, hard negatives (every training caption vs the batch's),
MLP width, a pull towards the ConSE vector (reg), photo-like anchors, a learned gate, and the
inference-time mix; each lever table row is retrained on the whole train split and shown with
its test figures, for reading only.
--ship trains the recipe with the best validation summed over both directions on both domains'
train splits, checks the issue's rules (photo zero-shot >= ConSE, unseen domain > ConSE in both
directions, in-domain test R@10 >= 2x ConSE) and writes the head to
src/xmodal/models/lite/data/head-VARIANT/ only if all hold. Such a head changes the vectors, so
it must come with a new variant name: collections are bound to the model name.
Run time: the image-tower cache takes ~30 min once on 2 busy cores; then ~8 min for lite-en
and ~10 min for lite.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, replace
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps

from _common import OUT, cached, ensemble, photo_labels, recall_at
from xmodal.images import load_image
from xmodal.models import load_model
from xmodal.models.lite import TEMPLATES
from xmodal.models.lite.classes import DATA_DIR
from xmodal.models.lite.head import AlignmentHead, save_head
from xmodal.models.lite.runtime import image_runner
from xmodal.models.lite.spec import IMAGE_TOWERS
from xmodal.models.preprocess import ImageTransform
from xmodal.samples import clipart_images, emoji_images, sample_photos, split_of

KS = (1, 5, 10)
TOWER = IMAGE_TOWERS["lite0"]
N_AUG = 6  # augmented views per image
VIEWS = 2 + N_AUG  # deployed (pad on white), centre crop, augmentations
DOMAINS = ("clipart", "emoji")
ADWAITA = Path("/usr/share/icons/Adwaita")


@dataclass(frozen=True)
class Item:
    caption: str
    path: Path
    category: str
    split: str

    @property
    def label(self) -> str:  # what _common.photo_labels reads
        return self.caption


# -- the data sets -------------------------------------------------------------------------------


def emoji_page(path: Path) -> str:
    """Finer categories than samples' two blocks: the 256-code-point page (U+1F300, U+1F600..)."""
    return f"U+{int(path.stem.split('_')[1], 16) & ~0xFF:04X}"


def adwaita_icons() -> list[Item]:
    """Each non-symbolic Adwaita icon name once, at its largest size; caption = the name's words.

    UI icons ("document-open", "audio-speakers") are a third drawn style, used only as a test.
    """
    best: dict[str, tuple[int, Path]] = {}
    for path in sorted(ADWAITA.rglob("*.png")):
        if "symbolic" in path.stem:
            continue
        size = int(path.relative_to(ADWAITA).parts[0].split("x")[0])
        if size >= 24 and size > best.get(path.stem, (0, path))[0]:
            best[path.stem] = (size, path)
    items = []
    for name, (_, path) in sorted(best.items()):
        caption = " ".join(w for w in name.replace("_", "-").split("-") if w.isalpha())
        if caption:
            items.append(Item(caption, path, path.parent.name, "test"))
    return items


def datasets() -> dict[str, list[Item]]:
    clipart = [Item(x.caption, x.path, x.category, split_of(x.caption)) for x in clipart_images()]
    emoji = [
        Item(x.caption, x.path, emoji_page(x.path), split_of(x.caption))
        for x in emoji_images(OUT / "emoji")
    ]
    photos = [Item(p.label, p.path, "photo", "test") for p in sample_photos(OUT / "photos")]
    return {"clipart": clipart, "emoji": emoji, "icons": adwaita_icons(), "photos": photos}


# -- views of one image --------------------------------------------------------------------------


def _background(rng: np.random.Generator, side: int) -> Image.Image:
    """White, a solid colour, a two-colour gradient or smooth noise: what drawings sit on."""
    kind = rng.choice(4, p=[0.35, 0.3, 0.2, 0.15])
    if kind == 0:
        return Image.new("RGB", (side, side), (255, 255, 255))
    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    if kind == 1:
        return Image.new("RGB", (side, side), tuple(int(c) for c in a))
    if kind == 2:
        t = np.linspace(0, 1, side, dtype=np.float32)[:, None, None]
        ramp = np.broadcast_to(a + t * (b - a), (side, side, 3))
        image = Image.fromarray(ramp.astype(np.uint8))
        return image.rotate(float(rng.uniform(0, 360)), fillcolor=tuple(int(c) for c in a))
    # Smooth colour noise, half-way to a solid colour so the drawing still stands out.
    noise = (rng.integers(0, 256, (8, 8, 3)) + a) // 2
    return Image.fromarray(noise.astype(np.uint8)).resize((side, side), Image.Resampling.BICUBIC)


def augment(rgba: Image.Image, rng: np.random.Generator, size: int) -> Image.Image:
    """A random crop, flip, colour change and background, as a size x size RGB square."""
    w, h = rgba.size
    if rng.random() < 0.7:
        cw, ch = max(1, round(w * rng.uniform(0.6, 1))), max(1, round(h * rng.uniform(0.6, 1)))
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        rgba = rgba.crop((x0, y0, x0 + cw, y0 + ch))
    if rng.random() < 0.5:
        rgba = ImageOps.mirror(rgba)
    alpha = rgba.getchannel("A")
    rgb = rgba.convert("RGB")
    # No hue rotation: captions name colours ("blue heart", "red apple").
    for enhance, lo, hi in (
        (ImageEnhance.Color, 0.4, 1.5),
        (ImageEnhance.Brightness, 0.7, 1.3),
        (ImageEnhance.Contrast, 0.7, 1.3),
    ):
        rgb = enhance(rgb).enhance(float(rng.uniform(lo, hi)))
    if rng.random() < 0.05:
        rgb = ImageOps.grayscale(rgb).convert("RGB")
    w, h = rgb.size
    side = max(w, h)
    canvas_side = max(side, round(side * rng.uniform(1.0, 1.5)))
    canvas = _background(rng, canvas_side)
    x0 = int(rng.integers(0, canvas_side - w + 1))
    y0 = int(rng.integers(0, canvas_side - h + 1))
    canvas.paste(rgb, (x0, y0), alpha)
    return canvas.resize((size, size), Image.Resampling.BICUBIC)


_PAD = ImageTransform(TOWER.size, TOWER.mean, TOWER.std, resize_mode="pad")
_CROP = ImageTransform(TOWER.size, TOWER.mean, TOWER.std, resize_mode="crop")


def views(path: Path) -> np.ndarray:
    """(VIEWS, 3, s, s) float32: as lite embeds it, centre-cropped, then N_AUG augmentations
    (seeded by the file name, so every run sees the same ones)."""
    path = Path(path)
    on_white = load_image(path)  # what the encoder does: transparency composited on white
    out = [_PAD(on_white), _CROP(on_white)]
    with Image.open(path) as f:
        rgba = f.convert("RGBA")
    rgba.thumbnail((512, 512), Image.Resampling.BICUBIC)  # a big poster need not be augmented
    seed = int.from_bytes(hashlib.blake2b(path.name.encode(), digest_size=8).digest(), "little")
    rng = np.random.default_rng(seed)
    out += [_PAD(augment(rgba, rng, TOWER.size)) for _ in range(N_AUG)]
    return np.stack(out)


def view_logits(name: str, items: list[Item], threads: int) -> np.ndarray:
    """(n, VIEWS, 1000) float16 image-tower logits, computed once and cached."""

    def compute():
        out = np.empty((len(items), VIEWS, 1000), dtype=np.float16)
        t0 = time.perf_counter()
        with Pool(threads) as pool:  # forked before ONNX Runtime starts its threads
            run = image_runner(TOWER, num_threads=threads)
            for i, v in enumerate(pool.imap(views, [x.path for x in items], chunksize=4)):
                out[i] = run(v)
                if i % 500 == 499:
                    print(f"  {name}: {i + 1}/{len(items)} in {time.perf_counter() - t0:.0f} s")
        return out

    key = f"{VIEWS}|" + "|".join(str(x.path) for x in items)
    return cached(f"head-logits-{name}", key, compute)


# -- vectors in one variant's space ----------------------------------------------------------------


class Space:
    """One lite variant's text vectors and ConSE image vectors, from the cached arrays."""

    def __init__(self, variant: str, captions: list[str], threads: int):
        self.encoder = load_model(variant, num_threads=threads)
        self.name = variant
        # Every caption embedded once (e5 is slow), then looked up.
        captions = sorted(set(captions))
        vecs = cached(
            f"head-text-{variant}",
            "|".join(captions),
            lambda: self.encoder.embed_texts(captions, batch_size=64),
        )
        self._vectors = dict(zip(captions, vecs))

    def texts(self, texts: list[str]) -> np.ndarray:
        return np.stack([self._vectors[t] for t in texts])

    def images(self, logits: np.ndarray) -> np.ndarray:
        """(n, V, 1000) logits -> (n, V, dim) unit ConSE vectors."""
        n, v, c = logits.shape
        flat = self.encoder.conse_from_logits(logits.reshape(n * v, c).astype(np.float32))
        return flat.reshape(n, v, -1)

    def labels(self, labels: list[str]) -> np.ndarray:
        def compute():
            return ensemble(self.encoder.embed_texts, labels, TEMPLATES)

        return cached(f"head-labels-{self.name}", "|".join(labels), compute)


def anchors(space: Space, n: int, seed: int) -> np.ndarray:
    """ConSE vectors of synthetic photo-like predictions, where ConSE already works and the head
    should change little: class k first, then the classes whose texts are like k's (a
    classifier confuses related classes), then noise. Their top class is about as clear as on
    real images (cosine to the nearest class text ~0.65-0.9; drawings ~0.5-0.75)."""
    rng = np.random.default_rng(seed)
    cls = space.encoder.class_vectors[0]
    sim = cls @ cls.T
    np.fill_diagonal(sim, np.sort(sim, axis=1)[:, -2])  # k itself: as close as its nearest
    sim = (sim - sim.mean(axis=1, keepdims=True)) / sim.std(axis=1, keepdims=True)
    k = rng.integers(0, len(cls), n)
    z = rng.uniform(0.5, 1.5, (n, 1)) * sim[k] + rng.normal(0, 1, (n, len(cls)))
    z[np.arange(n), k] += rng.uniform(0, 4, n)
    return space.encoder.conse_from_logits(z.astype(np.float32))


# -- training --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    hidden: int = 512
    gate: bool = False
    augment: bool = True  # train on the augmented views too, not only the deployed one
    reg: float = 0.0  # weight of 1 - cos(head(x), x): stay near the ConSE vector
    anchor: float = 0.0  # the same on synthetic confident (photo-like) vectors
    negatives: str = "all"  # "all" training captions or only the "batch"'s
    mix: float = 1.0  # the learned correction's scale at inference
    epochs: int = 40
    lr: float = 1e-3
    tau: float = 0.05

    def label(self) -> str:
        if self.mix == 0:
            return "ConSE alone"
        parts = [f"h{self.hidden}", "gate" if self.gate else "", "aug" if self.augment else ""]
        parts += [f"reg{self.reg:g}" if self.reg else ""]
        parts += [f"anchor{self.anchor:g}" if self.anchor else ""]
        parts += ["" if self.negatives == "all" else "inbatch", f"mix{self.mix:g}"]
        return " ".join(p for p in parts if p)


def train(recipe: Recipe, x: np.ndarray, captions: list[str], space: Space, seed: int = 0):
    """x: (n, V, dim) ConSE vectors of the training images -> a trained AlignmentHead."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    names = sorted(set(captions))
    text = torch.from_numpy(space.texts(names))  # (C, dim)
    target = torch.tensor([names.index(c) for c in captions])  # (n,)
    xs = torch.from_numpy(np.ascontiguousarray(x))
    anchor = torch.from_numpy(anchors(space, 4096, seed))
    head = AlignmentHead(x.shape[-1], hidden=recipe.hidden, gate=recipe.gate)
    opt = torch.optim.AdamW(head.parameters(), lr=recipe.lr, weight_decay=1e-2)
    batch = min(256, len(x))
    steps = recipe.epochs * math.ceil(len(x) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, recipe.lr, total_steps=steps)
    train_views = [0, *range(2, VIEWS)] if recipe.augment else [0]
    for _ in range(steps):
        idx = torch.from_numpy(rng.choice(len(x), batch, replace=False))
        view = torch.from_numpy(rng.choice(train_views, batch))
        xb = xs[idx, view]  # (B, dim)
        h = head(xb)
        tb = target[idx]
        if recipe.negatives == "all":
            # image -> caption among every training caption: (B, C)
            loss = torch.nn.functional.cross_entropy(h @ text.T / recipe.tau, tb)
        else:
            # image -> caption among the batch's captions only
            uniq, local = torch.unique(tb, return_inverse=True)
            loss = torch.nn.functional.cross_entropy(h @ text[uniq].T / recipe.tau, local)
        # caption -> image within the batch, every image with that caption a positive: (B, B)
        sim = text[tb] @ h.T / recipe.tau
        positive = tb[:, None] == tb[None, :]
        log_p = sim.log_softmax(dim=1)
        loss = loss - torch.logsumexp(log_p.masked_fill(~positive, -1e9), dim=1).mean()
        if recipe.reg:
            loss = loss + recipe.reg * (1 - (h * xb).sum(1)).mean()
        if recipe.anchor:
            a = anchor[torch.from_numpy(rng.integers(0, len(anchor), batch))]
            loss = loss + recipe.anchor * (1 - (head(a) * a).sum(1)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return with_mix(head, recipe.mix)


def with_mix(head: AlignmentHead, mix: float) -> AlignmentHead:
    out = AlignmentHead(**{**head.config, "mix": mix})
    out.load_state_dict(head.state_dict())
    return out.eval()


def apply(head: AlignmentHead | None, x: np.ndarray) -> np.ndarray:
    if head is None:
        return x
    with torch.inference_mode():
        return head(torch.from_numpy(np.ascontiguousarray(x))).numpy()


# -- scores ----------------------------------------------------------------------------------------


def retrieval(space: Space, x: np.ndarray, captions: list[str]) -> dict[int, float]:
    """Text -> image recall@k (%) of every distinct caption among the images x (n, dim)."""
    queries = sorted(set(captions))
    sim = space.texts(queries) @ x.T
    return {k: 100 * r for k, r in recall_at(sim, queries, captions, KS).items()}


def zero_shot(space: Space, x: np.ndarray, photos: list[Item]) -> int:
    labels = photo_labels(photos)
    pred = (x @ space.labels(labels).T).argmax(axis=1)
    return int(sum(labels[j] == p.caption for j, p in zip(pred, photos)))


class Bench:
    def __init__(self, variant: str, sets: dict[str, list[Item]], logits: dict[str, np.ndarray]):
        captions = [it.caption for items in sets.values() for it in items]
        self.space = Space(variant, captions, threads=1)
        self.sets = sets
        self.x = {name: self.space.images(v) for name, v in logits.items()}  # (n, V, dim)

    def subset(self, name: str, keep) -> tuple[np.ndarray, list[str]]:
        rows = [i for i, it in enumerate(self.sets[name]) if keep(it)]
        return self.x[name][rows], [self.sets[name][i].caption for i in rows]

    def report(self, head: AlignmentHead | None, trained_on: tuple[str, ...] = ()) -> dict:
        """Every test figure of one head (None: ConSE alone). A domain's 'all' column (train and
        test splits) is left out (None) for a head that trained on that domain."""
        out = {}
        for name in DOMAINS:
            for part in ("all", "test"):
                if part == "all" and name in trained_on:
                    out[f"{name}:all"] = None
                    continue
                x, caps = self.subset(name, lambda it, p=part: p == "all" or it.split == "test")
                out[f"{name}:{part}"] = retrieval(self.space, apply(head, x[:, 0]), caps)
        x, caps = self.subset("icons", lambda it: True)
        out["icons"] = retrieval(self.space, apply(head, x[:, 0]), caps)
        photos = apply(head, self.x["photos"][:, 0])
        out["photos"] = zero_shot(self.space, photos, self.sets["photos"])
        return out


# -- choosing a recipe without the test sets -------------------------------------------------------


def held_out_categories(items: list[Item]) -> set[str]:
    """About a quarter of the training domain's categories, fixed by a hash of their names."""
    cats = sorted({it.category for it in items})
    return {c for c in cats if hashlib.blake2b(c.encode(), digest_size=2).digest()[0] % 4 == 0}


def validation(bench: Bench, domain: str, recipes: list[Recipe]) -> list[tuple[Recipe, float]]:
    """Fit on the train split minus held-out categories (and their captions); score R@10 on
    those categories. Returns (recipe, R@10) best first, ConSE alone as Recipe(mix=0)."""
    train_items = [it for it in bench.sets[domain] if it.split == "train"]
    held = held_out_categories(train_items)
    val_caps = {it.caption for it in train_items if it.category in held}
    x_fit, c_fit = bench.subset(
        domain, lambda it: it.split == "train" and it.caption not in val_caps
    )
    x_val, c_val = bench.subset(domain, lambda it: it.split == "train" and it.category in held)
    heads = Trainer(x_fit, c_fit, bench.space)
    scores = [(r, retrieval(bench.space, apply(heads(r), x_val[:, 0]), c_val)[10]) for r in recipes]
    print(
        f"  {domain}: held-out categories {sorted(held)}: fit {len(c_fit)} images, "
        f"validate on {len(c_val)}"
    )
    return sorted(scores, key=lambda s: -s[1])


MIXES = (0.3, 0.5, 1.0)  # inference-time shrinkage tried for every trained head


def recipes() -> list[Recipe]:
    """The levers, one at a time from the issue's prototype, then combined; each at every mix."""
    proto = Recipe(augment=False)  # a plain residual MLP on the deployed views
    aug = Recipe()
    trained = [
        proto,
        aug,
        replace(aug, negatives="batch"),
        replace(aug, hidden=64),
        replace(aug, reg=1.0),
        replace(aug, reg=4.0),
        replace(aug, reg=10.0),
        replace(aug, anchor=4.0),
        replace(aug, gate=True),
        replace(aug, gate=True, anchor=4.0, reg=1.0),
    ]
    return [Recipe(mix=0)] + [replace(r, mix=m) for r in trained for m in MIXES]


class Trainer:
    """train() once per recipe and data; the mixes of one recipe share the trained weights."""

    def __init__(self, x: np.ndarray, captions: list[str], space: Space):
        self.x, self.captions, self.space = x, captions, space
        self._heads: dict[Recipe, AlignmentHead] = {}

    def __call__(self, r: Recipe) -> AlignmentHead | None:
        if r.mix == 0:
            return None
        key = replace(r, mix=1.0)
        if key not in self._heads:
            self._heads[key] = train(key, self.x, self.captions, self.space)
        return with_mix(self._heads[key], r.mix)


def levers(bench: Bench, domain: str, grid: list[Recipe]) -> list[tuple[str, dict]]:
    """Each recipe trained on the whole train split, with its test figures: for the lever
    table only, never for choosing."""
    heads = Trainer(*bench.subset(domain, lambda it: it.split == "train"), bench.space)
    return [(r.label(), bench.report(heads(r), (domain,))) for r in grid]


# -- the tables ------------------------------------------------------------------------------------


def fmt(r: dict[int, float]) -> str:
    return "/".join(f"{r[k]:4.1f}" for k in KS)


def print_report(title: str, rows: list[tuple[str, dict]]) -> None:
    cols = list(rows[0][1])
    print(f"\n{title}\n{'':34}" + "".join(f"{c:>19}" for c in cols))
    for label, m in rows:
        cells = [
            f"{m[c]:>16}/14" if c == "photos" else f"{fmt(m[c]) if m[c] else '-':>19}" for c in cols
        ]
        print(f"{label:34}" + "".join(cells))


def rules(base: dict, heads: dict[str, dict]) -> list[tuple[str, bool]]:
    """The issue's shipping rules, each (statement, met), on the per-direction heads."""
    checks = []
    for domain, m in heads.items():
        other = "emoji" if domain == "clipart" else "clipart"
        checks.append(
            (
                f"trained on {domain}: photos {m['photos']} >= ConSE {base['photos']}",
                m["photos"] >= base["photos"],
            )
        )
        checks.append(
            (
                f"trained on {domain}: unseen {other} R@10 {m[f'{other}:all'][10]:.1f} > "
                f"ConSE {base[f'{other}:all'][10]:.1f}",
                m[f"{other}:all"][10] > base[f"{other}:all"][10],
            )
        )
    return checks


def resize_check(bench: Bench) -> None:
    """ConSE alone on all clip art, padded (what lite does) vs centre-cropped, by image shape."""
    items = bench.sets["clipart"]
    ratio = np.array([_aspect(it.path) for it in items])
    shape = np.where(ratio > 1.5, "wide", np.where(ratio < 2 / 3, "tall", "squarish"))
    captions = [it.caption for it in items]
    print(f"\n{bench.space.name}: ConSE on all clip art, R@1/5/10 (%) of queries by image shape")
    for view, mode in ((0, "pad"), (1, "crop")):
        sim_all = bench.space.texts(sorted(set(captions))) @ bench.x["clipart"][:, view].T
        queries = sorted(set(captions))
        cells = []
        for kind in ("wide", "tall", "squarish"):
            wanted = {c for c, k in zip(captions, shape) if k == kind}
            rows = [i for i, q in enumerate(queries) if q in wanted]
            r = recall_at(sim_all[rows], [queries[i] for i in rows], captions, KS)
            cells.append(f"{kind} ({len(rows)} queries) {fmt({k: 100 * v for k, v in r.items()})}")
        print(f"  {mode:4}  " + "   ".join(cells))


def _aspect(path: Path) -> float:
    with Image.open(path) as f:
        w, h = f.size
    return w / h


def ship(bench: Bench, recipe: Recipe, base: dict, direction_checks: list) -> Path | None:
    """Train `recipe` on both domains' train splits; save it if every rule holds."""
    x, caps = [], []
    for domain in DOMAINS:
        xd, cd = bench.subset(domain, lambda it: it.split == "train")
        x.append(xd)
        caps += cd
    head = train(recipe, np.concatenate(x), caps, bench.space)
    m = bench.report(head, DOMAINS)
    print_report(
        f"{bench.space.name}: head trained on both domains ({recipe.label()})",
        [("ConSE alone", base), ("head", m)],
    )
    checks = list(direction_checks)
    photos = (m["photos"], base["photos"])
    checks.append((f"photos {photos[0]} >= ConSE {photos[1]}", photos[0] >= photos[1]))
    for domain in DOMAINS:
        r, b = m[f"{domain}:test"][10], base[f"{domain}:test"][10]
        checks.append((f"{domain} test R@10 {r:.1f} >= 2 x ConSE {b:.1f}", r >= 2 * b))
    for statement, met in checks:
        print(f"  {'PASS' if met else 'FAIL'}  {statement}")
    if not all(met for _, met in checks):
        print(f"  not shipped: {bench.space.name} keeps ConSE alone")
        return None
    folder = save_head(head, DATA_DIR / f"head-{bench.space.name}")
    print(f"  shipped: {folder}")
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variants", nargs="+", default=["lite-en", "lite"])
    ap.add_argument("--ship", action="store_true", help="train on both domains and ship the head")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    sets = datasets()
    print("sets: " + ", ".join(f"{k} {len(v)}" for k, v in sets.items()))
    logits = {name: view_logits(name, items, args.threads) for name, items in sets.items()}
    print(f"image-tower logits ready in {time.perf_counter() - t0:.0f} s")
    results = {}
    for variant in args.variants:
        bench = Bench(variant, sets, logits)
        base = bench.report(None)
        chosen, per_direction, validations = {}, {}, {}
        for domain in DOMAINS:
            ranked = validations[domain] = validation(bench, domain, recipes())
            print(f"\n{variant}, trained on {domain}: validation R@10, held-out categories")
            for r, score in ranked:
                print(f"  {score:5.1f}  {r.label()}")
            chosen[domain] = ranked[0][0]
            rows = levers(bench, domain, recipes())
            print_report(
                f"{variant}, levers trained on {domain} (test figures, not for choosing)", rows
            )
            per_direction[domain] = dict(rows)[chosen[domain].label()]
        rows = [("ConSE alone", base)]
        rows += [(f"head trained on {d}: {chosen[d].label()}", m) for d, m in per_direction.items()]
        print_report(f"{variant}: text->image R@1/5/10 (%), photo zero-shot", rows)
        checks = rules(base, per_direction)
        for statement, met in checks:
            print(f"  {'PASS' if met else 'FAIL'}  {statement}")
        if args.ship:
            totals = {}
            for domain in DOMAINS:
                for r, score in validations[domain]:
                    totals[r] = totals.get(r, 0.0) + score
            best = max(totals, key=totals.get)
            print(f"\nrecipe for both domains (best summed validation R@10): {best.label()}")
            ship(bench, best, base, checks)
        resize_check(bench)
        results[variant] = {
            "base": base,
            "chosen": {d: asdict(r) for d, r in chosen.items()},
            "heads": per_direction,
            "rules": checks,
        }
    OUT.mkdir(exist_ok=True)
    (OUT / "lite_head.json").write_text(json.dumps(results, indent=1, default=str))
    print(f"\ndone in {time.perf_counter() - t0:.0f} s; wrote {OUT / 'lite_head.json'}")


if __name__ == "__main__":
    main()
