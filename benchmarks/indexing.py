"""Indexing throughput against decoding alone, over the same real images, in one run.

    python benchmarks/indexing.py [--images 500] [--model lite] [--threads 2]

Baseline: every file read, decoded, composited and resized/normalised for the model
(`load_image` + `encoder.prepare_image`) on the same worker threads the indexer uses, with no
model. Then a fresh collection indexes the same files (workers decode, the main thread runs the
model, catalog commits per batch), then a re-run over the unchanged files. Images: the first
N openclipart-png drawings (Debian package), copied to a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from xmodal.engine.collection import Collection
from xmodal.images import load_image
from xmodal.models import load_model
from xmodal.samples import clipart_images


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--model", default="lite")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    args = ap.parse_args()

    sources = [x.path for x in clipart_images()[: args.images]]
    work = Path(tempfile.mkdtemp(prefix="xmodal-bench-"))
    folder = work / "images"
    folder.mkdir()
    for i, src in enumerate(sources):
        shutil.copy(src, folder / f"{i:05d}-{src.name}")
    files = sorted(folder.iterdir())
    megabytes = sum(f.stat().st_size for f in files) / 1e6
    encoder = load_model(args.model, num_threads=args.threads)
    print(
        f"{len(files)} openclipart PNGs ({megabytes:.0f} MB), model {encoder.name}, "
        f"{os.cpu_count()} cores ({cpu_name()})"
    )

    workers = min(4, os.cpu_count() or 1)
    t = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(lambda f: encoder.prepare_image(load_image(f)), files):
            pass
    decode_rate = len(files) / (time.perf_counter() - t)

    with Collection.open(work / "db", encoder) as collection:
        report = collection.index([folder])
        index_rate = report.images_per_second
        rerun = collection.index([folder])

    print(f"{'decode + resize only':28} {decode_rate:8.1f} images/s  ({workers} threads)")
    print(
        f"{'index (decode + model + db)':28} {index_rate:8.1f} images/s  "
        f"({report.embedded} embedded, {len(report.skipped)} skipped)"
    )
    print(f"{'ratio index / decode':28} {index_rate / decode_rate:8.2f}x")
    print(
        f"{'re-index, nothing changed':28} {rerun.seconds:8.2f} s for {len(files)} files "
        f"({rerun.embedded} embedded)"
    )
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
