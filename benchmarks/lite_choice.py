"""Choose the default `lite` variant by measurement, on data that ships with the project.

    python benchmarks/lite_choice.py [--cap 500] [--threads 2]

Sets: the 14 sample photos (zero-shot against their labels + distractors, prompt-ensembled with
lite.TEMPLATES; a smoke test), and the held-out (test split) emoji and openclipart drawings
(text -> image recall@1/5/10 of their captions). Plus the Hindi check: rank of chelsea for
"बिल्ली की फोटो" among the 14 photos.

Compared: image tower Lite0/1/2, resize crop/pad, text tower MiniLM/e5, e5 prefixes, centring,
class-text style, softmax temperature T and top-K. Image logits and text vectors are cached in
benchmarks/out/cache, so a rerun only recomputes what changed. Writes
benchmarks/out/lite_choice.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from dataclasses import asdict, dataclass, replace

import numpy as np

from _common import (
    HINDI_CAT,
    HINDI_QUERIES,
    OUT,
    cached,
    ensemble,
    eval_sets,
    photo_labels,
    recall_at,
)
from xmodal.images import load_image
from xmodal.models.lite import TEMPLATES
from xmodal.models.lite.classes import STYLES, class_texts
from xmodal.models.lite.conse import centre, conse
from xmodal.models.lite.spec import IMAGE_TOWERS
from xmodal.models.lite.text import TEXT_TOWERS

KS = (1, 5, 10)


@dataclass(frozen=True)
class Config:
    image_tower: str = "lite0"
    resize_mode: str = "crop"
    text_tower: str = "e5"
    class_style: str = "gloss"
    class_role: str = "passage"
    query_role: str = "query"
    centre: bool = True
    temperature: float = 2.0
    top_k: int | None = 10

    def label(self) -> str:
        roles = f" q:{self.query_role[0]} c:{self.class_role[0]}" if self.text_tower == "e5" else ""
        return (
            f"{self.image_tower} {self.resize_mode:4} {self.text_tower:6}{roles} "
            f"{self.class_style:6} {'ctr' if self.centre else 'raw'} T={self.temperature:g} "
            f"K={self.top_k or 'all'}"
        )


class Bench:
    def __init__(self, sets, threads: int):
        self.sets = sets
        self.threads = threads
        self.images = {name: [load_image(x.path) for x in items] for name, items in sets.items()}
        self._towers = {}
        self._nets = {}

    def tower(self, name):
        if name not in self._towers:
            self._towers[name] = TEXT_TOWERS[name](num_threads=self.threads)
        return self._towers[name]

    def logits(self, tower: str, mode: str, set_name: str) -> np.ndarray:
        paths = [str(x.path) for x in self.sets[set_name]]

        def compute():
            import torch

            from xmodal.models.lite.efficientnet import load_efficientnet
            from xmodal.models.preprocess import ImageTransform

            torch.set_num_threads(self.threads)
            spec = IMAGE_TOWERS[tower]
            if tower not in self._nets:
                self._nets[tower] = load_efficientnet(spec.package)
            transform = ImageTransform(spec.size, spec.mean, spec.std, resize_mode=mode)
            out = []
            ims = self.images[set_name]
            for i in range(0, len(ims), 32):
                with torch.inference_mode():
                    out.append(
                        self._nets[tower](torch.from_numpy(transform.batch(ims[i : i + 32])))
                    )
            return torch.cat(out).numpy()

        return cached(f"logits-{tower}-{mode}-{set_name}", "|".join([tower, mode, *paths]), compute)

    def texts(self, tower: str, role: str, texts: list[str]) -> np.ndarray:
        def compute():
            t = self.tower(tower)
            return np.concatenate(
                [t.embed(texts[i : i + 64], role) for i in range(0, len(texts), 64)]
            )

        return cached(f"text-{tower}-{role}", "|".join([tower, role, *texts]), compute)

    def embedders(self, c: Config):
        """(embed_texts(list of str), embed_images(set name)) for one configuration."""
        role = lambda r: r if c.text_tower == "e5" else "query"  # noqa: E731 (MiniLM: no prefixes)
        raw_classes = self.texts(c.text_tower, role(c.class_role), class_texts(c.class_style))
        mean = raw_classes.mean(axis=0) if c.centre else None
        classes = centre(raw_classes, mean)

        def embed_texts(texts):
            return centre(self.texts(c.text_tower, role(c.query_role), texts), mean)

        def embed_images(set_name):
            logits = self.logits(c.image_tower, c.resize_mode, set_name)
            return conse(logits, classes, c.temperature, c.top_k)

        return embed_texts, embed_images

    def evaluate(self, c: Config) -> dict:
        return self.score(*self.embedders(c))

    def score(self, embed_texts, embed_images) -> dict:
        """Every metric for one pair of embedders (texts, set name -> unit vectors)."""
        out = {}
        photos = self.sets["photos"]
        photo_vecs = embed_images("photos")
        labels = photo_labels(photos)
        pred = (photo_vecs @ ensemble(embed_texts, labels, TEMPLATES).T).argmax(axis=1)
        out["photos"] = int(sum(labels[j] == p.label for j, p in zip(pred, photos)))
        hindi = (photo_vecs @ embed_texts([HINDI_CAT])[0]).argsort()[::-1]
        out["hindi_rank"] = 1 + int(np.flatnonzero(hindi == 0)[0])  # chelsea is photo 0
        names = [p.name for p in photos]
        best = (embed_texts(list(HINDI_QUERIES.values())) @ photo_vecs.T).argmax(axis=1)
        out["hindi"] = int(sum(names[b] == n for b, n in zip(best, HINDI_QUERIES)))
        for name in ("emoji", "clipart"):
            captions = [x.caption for x in self.sets[name]]
            queries = sorted(set(captions))
            sim = embed_texts(queries) @ embed_images(name).T
            for k, r in recall_at(sim, queries, captions, KS).items():
                out[f"{name}_R@{k}"] = round(100 * r, 1)
        out["score"] = round(
            np.mean([out[f"{n}_R@{k}"] for n in ("emoji", "clipart") for k in KS]), 2
        )
        return out


def fit_logit_scale(bench: Bench, c: Config) -> tuple[float, float]:
    """The logit_scale minimising zero-shot cross-entropy on the TRAIN splits: each image
    against all captions of its set. Returns (scale, mean probability of the true caption)."""
    role = lambda r: r if c.text_tower == "e5" else "query"  # noqa: E731
    raw_classes = bench.texts(c.text_tower, role(c.class_role), class_texts(c.class_style))
    mean = raw_classes.mean(axis=0) if c.centre else None
    classes = centre(raw_classes, mean)
    sims, truth = [], []
    for name in ("emoji", "clipart"):
        captions = [x.caption for x in bench.sets[name]]
        labels = sorted(set(captions))
        label_vecs = ensemble(
            lambda t: centre(bench.texts(c.text_tower, role(c.query_role), t), mean),
            labels,
            TEMPLATES,
        )
        logits = bench.logits(c.image_tower, c.resize_mode, name)
        sims.append(conse(logits, classes, c.temperature, c.top_k) @ label_vecs.T)
        truth.append(np.array([labels.index(x) for x in captions]))

    def nll(scale: float) -> tuple[float, float]:
        losses, probs = [], []
        for s, t in zip(sims, truth):
            z = scale * s
            z = z - z.max(axis=1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
            picked = logp[np.arange(len(t)), t]
            losses.append(-picked.mean())
            probs.append(np.exp(picked).mean())
        return float(np.mean(losses)), float(np.mean(probs))

    scales = np.arange(5.0, 201.0, 5.0)
    best = min(scales, key=lambda s: nll(s)[0])
    return float(best), nll(best)[1]


# (text tower, query prefix, class prefix, centre); prefixes only matter for e5.
TEXT_SETUPS = [
    ("minilm", "query", "query", False),
    ("minilm", "query", "query", True),
    ("e5", "query", "passage", True),
    ("e5", "query", "passage", False),
    ("e5", "query", "query", True),
    ("e5", "passage", "passage", True),
]


def grid() -> list[Config]:
    return [
        Config(tower, mode, text, style, class_role, query_role, ctr, temp, k)
        for tower, mode, (text, query_role, class_role, ctr), style, temp, k in itertools.product(
            IMAGE_TOWERS, ("crop", "pad"), TEXT_SETUPS, STYLES, (1.0, 2.0, 4.0), (5, 10, 20, None)
        )
    ]


def one_at_a_time(base: Config) -> list[tuple[str, Config]]:
    rows = [("base", base)]
    options = {
        "image_tower": list(IMAGE_TOWERS),
        "resize_mode": ["crop", "pad"],
        "text_tower": ["e5", "minilm"],
        "class_style": list(STYLES),
        "query_role": ["query", "passage"],
        "class_role": ["query", "passage"],
        "centre": [True, False],
        "temperature": [1.0, 2.0, 4.0],
        "top_k": [5, 10, 20, None],
    }
    for field, values in options.items():
        for v in values:
            if v != getattr(base, field):
                rows.append((f"{field}={v}", replace(base, **{field: v})))
    return rows


HEADER = (
    f"{'config':58} {'photos':>6} {'hindi':>5} "
    + " ".join(f"{n[:5]}@{k:<2}" for n in ("emoji", "clipart") for k in KS)
    + "  score"
)


def row(label: str, m: dict) -> str:
    recalls = " ".join(f"{m[f'{n}_R@{k}']:8.1f}" for n in ("emoji", "clipart") for k in KS)
    hindi = f"{m['hindi']:>2}/{len(HINDI_QUERIES)}"
    return (
        f"{label:58} {m['photos']:>4}/14 {m['hindi_rank']:>3} {hindi} {recalls}  {m['score']:5.2f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cap", type=int, default=500, help="max images per held-out set")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--top", type=int, default=15, help="rows of the full grid to print")
    args = ap.parse_args()

    t0 = time.perf_counter()
    sets = eval_sets(args.cap)
    bench = Bench(sets, args.threads)
    print("sets: " + ", ".join(f"{k} {len(v)}" for k, v in sets.items()))
    results = {}
    for c in grid():
        results[c] = bench.evaluate(c)
    base = Config()
    print(f"\none factor at a time around: {base.label()}\n{HEADER}")
    for label, c in one_at_a_time(base):
        if c not in results:  # e.g. MiniLM with e5 roles: not in the grid, same model
            results[c] = bench.evaluate(c)
        print(row(label, results[c]))
    best = sorted(results, key=lambda c: -results[c]["score"])
    print(
        f"\nbest {args.top} of {len(results)} configs by held-out score (mean recall, %)\n{HEADER}"
    )
    for c in best[: args.top]:
        print(row(c.label(), results[c]))
    train = Bench(eval_sets(args.cap // 2, split="train"), args.threads)
    scales = {}
    for label, c in [
        ("best", best[0]),
        ("base", base),
        ("base minilm", replace(base, text_tower="minilm")),
    ]:
        scale, p_true = fit_logit_scale(train, c)
        scales[c.label()] = scale
        print(
            f"logit_scale fitted on train splits for {label} ({c.label()}): {scale:g} "
            f"(mean p(true caption) {p_true:.2f})"
        )
    OUT.mkdir(exist_ok=True)
    payload = {
        "logit_scales": scales,
        "sets": {k: len(v) for k, v in sets.items()},
        "results": [{**asdict(c), **m} for c, m in results.items()],
    }
    (OUT / "lite_choice.json").write_text(json.dumps(payload, indent=1))
    seconds = time.perf_counter() - t0
    print(f"\n{len(results)} configs in {seconds:.0f} s; wrote {OUT / 'lite_choice.json'}")


if __name__ == "__main__":
    main()
