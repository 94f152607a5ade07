"""Throughput of each lite variant: images/s and texts/s at batch 32 on `--threads` threads.

    python benchmarks/lite_speed.py [--threads 2] [--batches 3]

Images: "encode" starts from decoded PIL images (preprocess + network + ConSE);
"with decode" starts from PNG files (load_image + the same). Texts: short captions.
The first batch of each measurement is a warm-up and not timed.
"""

from __future__ import annotations

import argparse
import time

from _common import OUT
from xmodal.images import load_image
from xmodal.models.lite import VARIANTS, load
from xmodal.samples import sample_photos

BATCH = 32


def per_item_ms(fn, items, batches: int) -> float:
    fn(items[:BATCH])  # warm-up: lazy init, allocator
    t = time.perf_counter()
    for _ in range(batches):
        fn(items[:BATCH])
    return 1000 * (time.perf_counter() - t) / (batches * BATCH)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", type=int, default=3)
    args = ap.parse_args()
    photos = sample_photos(OUT / "photos")
    paths = [p.path for p in photos] * 3  # 42 files, >= one batch
    decoded = [load_image(p) for p in paths]
    texts = [f"a photo of a {p.label} number {i}" for i, p in enumerate(photos * 3)]
    print(f"batch {BATCH}, {args.threads} threads; ms per item (items/s)")
    print(f"{'variant':10} {'load s':>7} {'image encode':>16} {'image w/ decode':>16} {'text':>16}")
    for name in VARIANTS:
        t = time.perf_counter()
        model = load(name, num_threads=args.threads, batch_size=BATCH)
        load_s = time.perf_counter() - t
        cols = [
            per_item_ms(model.embed_images, decoded, args.batches),
            per_item_ms(model.embed_images, paths, args.batches),
            per_item_ms(model.embed_texts, texts, args.batches),
        ]
        cells = " ".join(f"{ms:7.1f} ({1000 / ms:5.0f}/s)" for ms in cols)
        print(f"{name:10} {load_s:7.2f} {cells}")


if __name__ == "__main__":
    main()
