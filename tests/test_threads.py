"""engine/threads.py: decode workers and model threads chosen together for the usable cores."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from xmodal.config import Settings
from xmodal.engine import threads
from xmodal.engine.collection import Collection
from xmodal.engine.indexer import Embedded, FileRead
from xmodal.engine.threads import (
    CPU_MODEL_BATCH,
    ThreadPlan,
    indexing_plan,
    model_batch,
    query_plan,
    usable_cpus,
)
from xmodal.errors import InvalidInputError
from xmodal.models.fake import FakeEncoder

DEFAULTS = Settings()


@pytest.mark.parametrize(
    ("cpus", "workers", "model"),
    [(1, 1, 1), (2, 2, 1), (4, 4, 1), (8, 7, 2), (16, 13, 4)],
)
def test_indexing_plan_per_core_count(cpus, workers, model):
    assert indexing_plan(cpus, DEFAULTS) == ThreadPlan(cpus, workers, model)


@pytest.mark.parametrize("cpus", [1, 2, 3, 4, 6, 8, 16, 64, 256])
def test_indexing_plan_never_oversubscribes_the_model(cpus):
    plan = indexing_plan(cpus, DEFAULTS)
    assert 1 <= plan.model_threads <= max(1, cpus // 2)  # decoding is most of the work
    assert 1 <= plan.decode_workers <= cpus
    # Together at most one thread more than the cores: the main thread's, which the model
    # shares with waiting for reads and commits.
    assert plan.decode_workers + plan.model_threads <= cpus + 1
    # The model's operators wait for their slowest thread: never more model threads than
    # cores, and on the small machines the model runs in one thread (no pool, no barrier).
    assert plan.model_threads <= cpus
    if cpus <= 2:
        assert plan.model_threads == 1


def test_a_users_model_threads_win_and_decoders_fit_beside_them():
    settings = Settings(num_threads=3)
    assert indexing_plan(4, settings) == ThreadPlan(4, 2, 3)
    assert indexing_plan(16, settings) == ThreadPlan(16, 14, 3)
    assert indexing_plan(2, Settings(num_threads=1)) == indexing_plan(2, DEFAULTS)
    assert query_plan(16, settings).model_threads == 3
    # More than the machine has is the user's choice; decoding still gets a thread.
    assert indexing_plan(2, Settings(num_threads=8)) == ThreadPlan(2, 1, 8)


def test_a_users_decode_workers_win_and_the_model_gets_the_rest():
    assert indexing_plan(8, Settings(decode_workers=2)) == ThreadPlan(8, 2, 6)
    assert indexing_plan(2, Settings(decode_workers=4)) == ThreadPlan(2, 4, 1)
    assert indexing_plan(8, Settings(decode_workers=2, num_threads=1)) == ThreadPlan(8, 2, 1)


def test_settings_read_the_environment():
    env = {"XMODAL_NUM_THREADS": "2", "XMODAL_DECODE_WORKERS": "3"}
    settings = Settings.from_env(env)
    assert (settings.num_threads, settings.decode_workers) == (2, 3)
    assert Settings.from_env({}).decode_workers is None


@pytest.mark.parametrize("cpus", [1, 2, 16, 1000])
def test_a_query_only_process_gives_the_model_every_core(cpus):
    plan = query_plan(cpus, DEFAULTS)
    assert plan.decode_workers == 1
    assert plan.model_threads == min(cpus, threads.MAX_MODEL_THREADS)


@pytest.mark.parametrize(
    "settings", [Settings(num_threads=0), Settings(decode_workers=0), Settings(num_threads=-2)]
)
def test_nonsense_settings_are_refused(settings):
    with pytest.raises(InvalidInputError, match="at least 1"):
        indexing_plan(4, settings)


def test_nonsense_cpu_counts_are_refused():
    with pytest.raises(InvalidInputError, match="cpus"):
        indexing_plan(0, DEFAULTS)


def test_usable_cpus_follows_the_affinity_mask():
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("CPU affinity is Linux-only")
    code = (
        "import os; from xmodal.engine.threads import usable_cpus;"
        "os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]}); print(usable_cpus())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"
    assert 1 <= usable_cpus() <= (os.cpu_count() or 1)


@pytest.mark.parametrize(
    ("text", "quota"),
    [("max 100000\n", None), ("150000 100000\n", 2), ("50000 100000\n", 1), ("", None)],
)
def test_a_cgroup_cpu_quota_is_read(tmp_path, monkeypatch, text, quota):
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text(text)
    monkeypatch.setattr(threads, "_CGROUP_CPU_MAX", cpu_max)
    assert threads._cgroup_quota() == quota
    if quota is not None:
        assert usable_cpus() <= quota


class _ThreadNoting(FakeEncoder):
    """The fake encoder, noting which threads prepare images and how many images a call gets."""

    def __init__(self):
        super().__init__(32)
        self.threads: set[str] = set()
        self.calls: list[int] = []
        self.blas: list[int | None] = []  # numpy's BLAS threads while the model runs

    def prepare_image(self, image):
        self.threads.add(threading.current_thread().name)
        return super().prepare_image(image)

    def _encode_prepared(self, prepared):
        self.calls.append(len(prepared))
        self.blas.append(_blas_threads())
        return super()._encode_prepared(prepared)


def _blas_threads() -> int | None:
    from threadpoolctl import threadpool_info

    pools = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    return max(pools) if pools else None


def test_model_batches_are_small_on_a_cpu_and_whole_on_an_accelerator():
    encoder = FakeEncoder(8)
    assert model_batch(encoder, 32) == CPU_MODEL_BATCH
    assert model_batch(encoder, 4) == 4  # never more than a commit holds
    encoder.device = "cuda:0"
    assert model_batch(encoder, 32) == 32


def test_indexing_runs_the_model_in_small_batches_and_commits_whole_ones(tmp_path, photos):
    encoder = _ThreadNoting()
    with Collection.open(tmp_path / "db", encoder) as collection:
        report = collection.index([p.path for p in photos], batch_size=32)
        assert collection.count() == len(photos)
    assert report.embedded == len(photos) == sum(encoder.calls)
    assert max(encoder.calls) == CPU_MODEL_BATCH
    # BLAS shares the model's threads while indexing, and has its own back afterwards.
    planned = indexing_plan().model_threads
    assert set(encoder.blas) <= {planned, None}


def test_blas_threads_are_limited_inside_the_block_only():
    pytest.importorskip("threadpoolctl")
    before = _blas_threads()
    if before is None:
        pytest.skip("numpy has no BLAS that threadpoolctl can see")
    with threads.blas_threads(1):
        assert _blas_threads() == 1
    assert _blas_threads() == before


def test_indexing_decodes_on_the_planned_workers(tmp_path, photos, monkeypatch):
    monkeypatch.setenv("XMODAL_DECODE_WORKERS", "1")
    encoder = _ThreadNoting()
    with Collection.open(tmp_path / "db", encoder) as collection:
        report = collection.index([p.path for p in photos])
    assert report.embedded == len(photos)
    assert len(encoder.threads) == 1 and next(iter(encoder.threads)).startswith("xmodal-read")


def test_a_model_that_indexing_loads_gets_the_planned_threads(tmp_path, photos):
    with Collection.open(tmp_path / "db", "lite") as collection:
        collection.index([photos[0].path, photos[1].path])
        runner = collection.encoder._run
    if runner.name != "onnx":
        pytest.skip("ONNX Runtime is not what runs lite's image tower here")
    options = runner._session.get_session_options()
    assert options.intra_op_num_threads == indexing_plan().model_threads


def test_vectors_embedded_elsewhere_never_run_the_model(tmp_path, photos):
    encoder = _ThreadNoting()

    def reader(files, known):
        for found in files:
            path = os.fsdecode(found.path)
            digest = hashlib.blake2b(Path(path).read_bytes(), digest_size=16).digest()
            vector = encoder.embed_images([path])[0]
            yield FileRead(found, digest, prepared=Embedded(vector), width=1, height=1)

    with Collection.open(tmp_path / "db", encoder) as collection:
        report = collection.index([p.path for p in photos], reader=reader)
        assert collection.count() == len(photos)
    assert report.embedded == len(photos)
    assert sum(encoder.calls) == len(photos)  # the reader's own calls, none by the indexer
