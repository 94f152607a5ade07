"""Indexing throughput against decoding alone, over the same real images, in one run.

    python benchmarks/indexing.py [--images 500] [--source clipart|wallpapers] [--model lite]
                                  [--threads 2]

Baseline: every file read, decoded, composited and resized/normalised for the model
(`load_image` at the encoder's `decode_size` + `encoder.prepare_image`) on the same worker
threads the indexer uses, with no model. Then a fresh collection indexes the same files
(workers decode, the main thread runs the model, catalog commits per batch), then a re-run over
the unchanged files. Images, copied to a temporary folder:
  clipart:    the first N openclipart-png drawings (Debian package; PNG, decoded in full);
  wallpapers: the JPEG wallpapers of the Debian packages mate-backgrounds and
              plasma-workspace-wallpapers, one per content; large photos, decoded at a reduced
              DCT scale, so the full-size decode of the same files is timed too.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from xmodal.engine.collection import Collection
from xmodal.errors import MissingDataError
from xmodal.images import load_image
from xmodal.models import load_model
from xmodal.samples import clipart_images


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


WALLPAPER_PACKAGES = {
    "mate-backgrounds": Path("/usr/share/backgrounds/mate"),
    "plasma-workspace-wallpapers": Path("/usr/share/wallpapers"),
}


# Smaller JPEGs in the packages are preview screenshots, not wallpapers.
WALLPAPER_MIN_PIXELS = 2_000_000


def wallpapers() -> list[Path]:
    """The packages' large JPEG files, the first path of each distinct content (most sizes of
    a plasma wallpaper are links to one file), in path order."""
    by_hash: dict[bytes, Path] = {}
    for package, root in WALLPAPER_PACKAGES.items():
        if not root.is_dir():
            raise MissingDataError(f"{root} not found: install the Debian package {package}")
        for path in sorted(root.rglob("*")):
            if path.suffix.lower() not in (".jpg", ".jpeg") or not path.is_file():
                continue
            if _pixels(path) < WALLPAPER_MIN_PIXELS:
                continue
            digest = hashlib.blake2b(path.read_bytes(), digest_size=16).digest()
            by_hash.setdefault(digest, path)
    return list(by_hash.values())


def timed_rate(workers: int, fn, files: list[Path], keep: bool) -> tuple[float, list]:
    """Images per second of `fn` over `files` on `workers` threads, and its results if `keep`."""
    t = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        results = [r for r in pool.map(fn, files) if keep]
    return len(files) / (time.perf_counter() - t), results


def _pixels(path: Path) -> int:
    with Image.open(path) as image:  # the header only
        return image.width * image.height


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--source", choices=("clipart", "wallpapers"), default="clipart")
    ap.add_argument("--model", default="lite")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    args = ap.parse_args()

    if args.source == "clipart":
        sources = [x.path for x in clipart_images()[: args.images]]
    else:
        sources = wallpapers()[: args.images]
    work = Path(tempfile.mkdtemp(prefix="xmodal-bench-"))
    folder = work / "images"
    folder.mkdir()
    for i, src in enumerate(sources):
        shutil.copy(src, folder / f"{i:05d}-{src.name}")
    files = sorted(folder.iterdir())
    megabytes = sum(f.stat().st_size for f in files) / 1e6
    encoder = load_model(args.model, num_threads=args.threads)
    kind = "openclipart PNGs" if args.source == "clipart" else "wallpaper JPEGs"
    megapixels = sum(_pixels(f) for f in files) / len(files) / 1e6
    print(
        f"{len(files)} {kind} ({megabytes:.0f} MB, {megapixels:.1f} MP on average), "
        f"model {encoder.name}, {os.cpu_count()} cores ({cpu_name()})"
    )

    workers = min(4, os.cpu_count() or 1)
    size = encoder.decode_size
    photos = args.source == "wallpapers"
    decode_rate, reduced = timed_rate(
        workers, lambda f: encoder.prepare_image(load_image(f, min_side=size)), files, photos
    )
    full_rate = None
    if photos:
        full_rate, full = timed_rate(
            workers, lambda f: encoder.prepare_image(load_image(f)), files, photos
        )
        # Row-wise cosine of unit vectors: how far the reduced decode moves each vector.
        cosines = (encoder.embed_prepared(reduced) * encoder.embed_prepared(full)).sum(axis=1)

    with Collection.open(work / "db", encoder) as collection:
        report = collection.index([folder])
        index_rate = report.images_per_second
        rerun = collection.index([folder])

    if full_rate is not None:
        print(f"{'full decode + resize':28} {full_rate:8.1f} images/s  ({workers} threads)")
    # PNGs always decode in full; only the JPEG run is a reduced-size decode.
    shown = f"decode at >= {size} px + resize" if photos and size else "decode + resize only"
    print(f"{shown:28} {decode_rate:8.1f} images/s  ({workers} threads)")
    if full_rate is not None:
        print(f"{'ratio reduced / full decode':28} {decode_rate / full_rate:8.2f}x")
        print(f"{'cosine reduced vs full':28} {cosines.min():8.4f} min, {cosines.mean():.4f} mean")
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
