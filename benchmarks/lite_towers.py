"""Text towers for `lite`: MiniLM (English), e5 (multilingual) or both side by side.

    python benchmarks/lite_towers.py [--cap 500]

Both: a text and an image are each the concatenation of their unit vectors in the two towers'
spaces (each scaled by 1/sqrt(2)), so their cosine is the mean of the two towers' cosines.
Same held-out sets and metrics as lite_choice.py (photos zero-shot X/14, Hindi queries found
among the 14 photos X/11, text->image recall@k on held-out emoji and clip art); image logits and
text vectors come from its cache.
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np

from _common import eval_sets
from lite_choice import KS, Bench, Config

TOWERS = {"minilm": ("minilm",), "e5": ("e5",), "both": ("minilm", "e5")}


def evaluate(bench: Bench, configs: list[Config]) -> dict:
    fns = [bench.embedders(c) for c in configs]
    w = 1 / np.sqrt(len(fns))

    def texts(t):
        return w * np.concatenate([f[0](t) for f in fns], axis=1)

    def images(s):
        return w * np.concatenate([f[1](s) for f in fns], axis=1)

    return bench.score(texts, images)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cap", type=int, default=500, help="max images per held-out set")
    args = ap.parse_args()
    bench = Bench(eval_sets(args.cap), threads=2)
    print(
        f"{'image  resize T  K    towers':34} photos hindi "
        + " ".join(f"{n[:5]}@{k:<2}" for n in ("emoji", "clipart") for k in KS)
        + "  score"
    )
    grid = itertools.product(("lite0", "lite1", "lite2"), ("crop", "pad"), ((2.0, None), (2.0, 10)))
    for tower, mode, (temp, k) in grid:
        for label, names in TOWERS.items():
            configs = [
                Config(
                    tower,
                    mode,
                    name,
                    "gloss",
                    "passage" if name == "e5" else "query",
                    "query",
                    True,
                    temp,
                    k,
                )
                for name in names
            ]
            m = evaluate(bench, configs)
            recalls = " ".join(f"{m[f'{n}_R@{k}']:8.1f}" for n in ("emoji", "clipart") for k in KS)
            print(
                f"{tower:6} {mode:6} {temp:g} {k or 'all':<4} {label:6}          "
                f"{m['photos']:>3}/14 {m['hindi']:>2}/11 {recalls}  {m['score']:5.2f}"
            )


if __name__ == "__main__":
    main()
