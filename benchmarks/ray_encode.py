"""Encoding on Ray against encoding in process, over the same real images, in one run.

    python benchmarks/ray_encode.py [--images 300] [--model lite] [--cpus N]

Baseline: a fresh collection indexes the files in this process (worker threads decode, the
main thread runs the model). Then a local Ray cluster of --cpus CPUs (default: all) starts
(timed apart), and a second fresh collection indexes the same files with --engine ray: decode
tasks, an actor pool sized by plan_pool(), rows written by the same indexer. Both end in the
same vectors (the minimum cosine is printed). Images: the first N openclipart-png drawings
(Debian package), copied to a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from xmodal.distributed.ray_encode import cluster, ray_reader
from xmodal.engine.collection import Collection
from xmodal.samples import clipart_images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--model", default="lite")
    ap.add_argument("--cpus", type=int, default=os.cpu_count())
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="xmodal-bench-ray-"))
    folder = work / "images"
    folder.mkdir()
    for i, item in enumerate(clipart_images()[: args.images]):
        shutil.copy(item.path, folder / f"{i:05d}-{item.path.name}")
    print(f"{args.images} openclipart PNGs, model {args.model}, {args.cpus} CPUs for Ray")
    try:
        with Collection.open(work / "local", args.model) as local:
            base = local.index([folder])
        print(
            f"in process: {base.embedded} images in {base.seconds:.1f} s = "
            f"{base.images_per_second:.1f} images/s"
        )
        started = time.perf_counter()
        with cluster(num_cpus=args.cpus):
            boot = time.perf_counter() - started
            plans = []
            with Collection.open(work / "ray", args.model) as distributed:
                report = distributed.index(
                    [folder], reader=ray_reader(args.model, on_plan=plans.append)
                )
        total = time.perf_counter() - started
        print(f"ray pool: {plans[0].describe()} (plan_pool: CPUs - 1 for decoding, / threads)")
        print(
            f"ray: cluster start {boot:.1f} s; job {report.seconds:.1f} s = "
            f"{report.images_per_second:.1f} images/s; with start and stop {total:.1f} s"
        )
        print(
            f"ray / in process: {report.images_per_second / base.images_per_second:.2f}x "
            f"images/s; overhead {report.seconds - base.seconds:+.1f} s per job "
            f"(+{boot:.1f} s to start a local cluster)"
        )
        a, b = Collection.open(work / "local"), Collection.open(work / "ray")
        cosines = [float(a.vector(i) @ b.vector(i)) for i in range(1, a.count() + 1)]
        print(f"same vectors: {a.count()} == {b.count()} items, min cosine {np.min(cosines):.6f}")
        a.close()
        b.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
