"""Indexing throughput against decoding alone, over the same real images, in one run.

    python benchmarks/indexing.py [--images 500] [--source clipart|wallpapers] [--model lite]
                                  [--threads N] [--workers N] [--batch N] [--model-batch N]
                                  [--rounds 5]

Baseline: every file read, decoded, composited and resized/normalised for the model
(`load_image` at the encoder's `decode_size` + `encoder.prepare_image`) on one thread per usable
core, with no model. Then a fresh collection indexes the same files (decode workers and model
threads from engine/threads.py unless --workers / --threads say otherwise; the main thread runs
the model, catalog commits per batch), then a re-run over the unchanged files. The model is
loaded and run once before timing (its load is cold_start.py's business), and decoding and
indexing alternate for --rounds rounds, the median of each reported, so that load from other
processes falls on both alike. Images, copied to a temporary folder:
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
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from xmodal.config import get_settings
from xmodal.engine import threads as threads_module
from xmodal.engine.collection import Collection
from xmodal.engine.threads import blas_threads, indexing_plan
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


# Images the model alone is timed on (prepared, kept in memory: 0.6 MB each at 224 px).
MODEL_SAMPLE = 64
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


class OtherLoad:
    """How many cores' worth other processes kept busy since creation (Linux /proc/stat):
    on a shared machine the rates mean little without it."""

    def __init__(self):
        self._start = (self._busy(), time.process_time(), time.perf_counter())

    @staticmethod
    def _busy() -> float:
        try:
            ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        except OSError:
            return float("nan")
        return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # less idle, iowait

    def cores(self) -> float:
        busy, ours, wall = self._start
        elapsed = time.perf_counter() - wall
        return (self._busy() - busy - (time.process_time() - ours)) / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--source", choices=("clipart", "wallpapers"), default="clipart")
    ap.add_argument("--model", default="lite")
    ap.add_argument("--threads", type=int, help="model threads (default: engine/threads.py)")
    ap.add_argument("--workers", type=int, help="decode workers (default: engine/threads.py)")
    ap.add_argument("--batch", type=int, help="indexing batch (default: XMODAL_BATCH_SIZE)")
    ap.add_argument("--model-batch", type=int, help="images per model call on a CPU (default 8)")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    if args.model_batch:
        threads_module.CPU_MODEL_BATCH = args.model_batch  # read by model_batch() on each run
    # What Collection.index reads: the plan (and BLAS's threads in the run) follow them.
    if args.workers:
        os.environ["XMODAL_DECODE_WORKERS"] = str(args.workers)
    if args.threads:
        os.environ["XMODAL_NUM_THREADS"] = str(args.threads)
    plan = indexing_plan()
    threads = args.threads or plan.model_threads

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
    encoder = load_model(args.model, num_threads=threads)
    kind = "openclipart PNGs" if args.source == "clipart" else "wallpaper JPEGs"
    megapixels = sum(_pixels(f) for f in files) / len(files) / 1e6
    print(
        f"{len(files)} {kind} ({megabytes:.0f} MB, {megapixels:.1f} MP on average), "
        f"model {encoder.name}, {plan.cpus} usable cores ({cpu_name()}); indexing with "
        f"{plan.decode_workers} decode workers, {threads} model threads, "
        f"batch {args.batch or get_settings().batch_size} (model calls of "
        f"{min(threads_module.CPU_MODEL_BATCH, args.batch or get_settings().batch_size)})"
    )

    cores = plan.cpus  # the baseline decodes on every core
    size = encoder.decode_size
    photos = args.source == "wallpapers"

    def reduced(f):
        return encoder.prepare_image(load_image(f, min_side=size))

    # Untimed: builds the model's session and warms the decoders.
    sample = [reduced(f) for f in files[:MODEL_SAMPLE]]
    encoder.embed_prepared(sample[:1])
    with blas_threads(threads):  # as an indexing run has it
        t = time.perf_counter()
        encoder.embed_prepared(sample)
        model_rate = len(sample) / (time.perf_counter() - t)

    full_rate = None
    if photos:
        full_rate, full = timed_rate(
            cores, lambda f: encoder.prepare_image(load_image(f)), files, photos
        )
        _, kept = timed_rate(cores, reduced, files, photos)
        # Row-wise cosine of unit vectors: how far the reduced decode moves each vector.
        cosines = (encoder.embed_prepared(kept) * encoder.embed_prepared(full)).sum(axis=1)
        del full, kept

    decode_rates, index_rates, reports = [], [], []
    decode_cpu = index_cpu = 0.0  # this process's CPU seconds, all threads
    others = OtherLoad()
    for r in range(args.rounds):
        cpu = time.process_time()
        decode_rates.append(timed_rate(cores, reduced, files, False)[0])
        decode_cpu += time.process_time() - cpu
        with Collection.open(work / f"db{r}", encoder) as collection:
            cpu = time.process_time()
            reports.append(collection.index([folder], batch_size=args.batch))
            index_cpu += time.process_time() - cpu
            index_rates.append(reports[-1].images_per_second)
            if r == 0:
                rerun = collection.index([folder])
    decode_rate, index_rate = statistics.median(decode_rates), statistics.median(index_rates)
    # Each index round against the decode round just before it: load that comes and goes
    # falls on both sides of a pair alike.
    ratio = statistics.median(i / d for i, d in zip(index_rates, decode_rates))
    report = reports[0]

    if full_rate is not None:
        print(f"{'full decode + resize':28} {full_rate:8.1f} images/s  ({cores} threads)")
    # PNGs always decode in full; only the JPEG run is a reduced-size decode.
    shown = f"decode at >= {size} px + resize" if photos and size else "decode + resize only"
    print(f"{shown:28} {decode_rate:8.1f} images/s  ({cores} threads; {_spread(decode_rates)})")
    if full_rate is not None:
        print(f"{'ratio reduced / full decode':28} {decode_rate / full_rate:8.2f}x")
        print(f"{'cosine reduced vs full':28} {cosines.min():8.4f} min, {cosines.mean():.4f} mean")
    print(f"{'model alone':28} {model_rate:8.1f} images/s  ({threads} threads)")
    print(
        f"{'index (decode + model + db)':28} {index_rate:8.1f} images/s  "
        f"({report.embedded} embedded, {len(report.skipped)} skipped; {_spread(index_rates)})"
    )
    print(f"{'ratio index / decode':28} {ratio:8.2f}x  (median of the rounds' ratios)")
    # Core-seconds per image of each side; overlapped perfectly, indexing costs their sum.
    # CPU time per image, measured (all threads of this process): it hardly moves with other
    # processes' load, unlike the rates, and its ratio is what indexing reaches against
    # decoding when both keep every core busy.
    per_image = 1e3 / (len(files) * args.rounds)
    decode_ms, index_ms = decode_cpu * per_image, index_cpu * per_image
    print(
        f"{'CPU per image':28} decode-only {decode_ms:.1f} ms, index {index_ms:.1f} ms "
        f"(ratio {decode_ms / index_ms:.2f}x)"
    )
    print(f"{'other processes':28} {others.cores():8.2f} cores busy on average during the rounds")
    print(
        f"{'re-index, nothing changed':28} {rerun.seconds:8.2f} s for {len(files)} files "
        f"({rerun.embedded} embedded)"
    )
    shutil.rmtree(work)


def _spread(rates: list[float]) -> str:
    return f"{len(rates)} rounds {min(rates):.1f}-{max(rates):.1f}"


if __name__ == "__main__":
    main()
