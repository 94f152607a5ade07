"""Throughput of each lite variant: images/s and texts/s at batch 32 on `--threads` threads.

    python benchmarks/lite_speed.py [--threads 2] [--batches 3]

First the image tower alone on prepared pixels, per runtime (models/lite/runtime.py), against
the plain eager torch network (padding computed per call, NCHW) as the baseline. Then each
variant on the runtime it chose: "encode" starts from decoded PIL images (preprocess + network +
ConSE, and lite-v2's bank); "with decode" starts from PNG files (load_image + the same). Texts:
short English captions, and Hindi queries (which lite-v2 sends to e5 alone).
The first batch of each measurement is a warm-up and not timed.
"""

from __future__ import annotations

import argparse
import time

from _common import HINDI_QUERIES, OUT
from xmodal.images import load_image
from xmodal.models.lite import IMAGE_TOWERS, VARIANTS, load
from xmodal.models.lite.efficientnet import load_efficientnet
from xmodal.models.lite.runtime import image_runner
from xmodal.models.preprocess import ImageTransform
from xmodal.samples import sample_photos

BATCH = 32


def per_item_ms(fn, items, batches: int) -> float:
    fn(items[:BATCH])  # warm-up: lazy init, allocator
    t = time.perf_counter()
    for _ in range(batches):
        fn(items[:BATCH])
    return 1000 * (time.perf_counter() - t) / (batches * BATCH)


def image_tower_table(decoded, threads: int, batches: int) -> None:
    """ms per image of the Lite0 network alone, each runtime against eager torch."""
    import torch

    torch.set_num_threads(threads)
    tower = IMAGE_TOWERS[VARIANTS["lite"].image_tower]
    transform = ImageTransform(tower.size, tower.mean, tower.std, resize_mode="pad")
    pixels = transform.batch(decoded[:BATCH])
    eager = load_efficientnet(tower.package)

    def baseline(x):
        with torch.inference_mode():
            return eager(torch.from_numpy(x)).numpy()

    runners = {"eager torch (baseline)": baseline}
    for name in ("torch", "onnx"):
        runners[name] = image_runner(tower, runtime=name, num_threads=threads)
    print(f"image tower alone, batch {BATCH}, {threads} threads")
    base_ms = None
    for name, run in runners.items():
        ms = per_item_ms(run, pixels, batches)
        base_ms = base_ms or ms
        print(f"  {name:24} {ms:7.1f} ms/image ({1000 / ms:5.0f}/s)  {base_ms / ms:5.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", type=int, default=3)
    args = ap.parse_args()
    photos = sample_photos(OUT / "photos")
    paths = [p.path for p in photos] * 3  # 42 files, >= one batch
    decoded = [load_image(p) for p in paths]
    texts = [f"a photo of a {p.label} number {i}" for i, p in enumerate(photos * 3)]
    queries = list(HINDI_QUERIES.values())
    hindi = [f"{queries[i % len(queries)]} {i}" for i in range(len(texts))]
    image_tower_table(decoded, args.threads, args.batches)
    print(
        f"\nvariants, batch {BATCH}, {args.threads} threads; ms per item (items/s), and in [ ] "
        "each variant against lite (the baseline, measured first)"
    )
    print(
        f"{'variant':10} {'runtime':7} {'load s':>7} {'image encode':>24} "
        f"{'image w/ decode':>24} {'English text':>24} {'Hindi text':>24}"
    )
    base = None
    for name in ["lite", *(v for v in VARIANTS if v != "lite")]:
        t = time.perf_counter()
        model = load(name, num_threads=args.threads, batch_size=BATCH)
        load_s = time.perf_counter() - t
        cols = [
            per_item_ms(model.embed_images, decoded, args.batches),
            per_item_ms(model.embed_images, paths, args.batches),
            per_item_ms(model.embed_texts, texts, args.batches),
            per_item_ms(model.embed_texts, hindi, args.batches),
        ]
        base = base or cols
        cells = " ".join(
            f"{ms:7.1f} ({1000 / ms:5.0f}/s) [{ms / b:4.2f}x]" for ms, b in zip(cols, base)
        )
        print(f"{name:10} {model.runtime:7} {load_s:7.2f} {cells}")


if __name__ == "__main__":
    main()
