"""Encoding on a real local Ray cluster (one per session): `index --engine ray` ends in the
same catalog and vectors as the in-process path, `embed image --engine ray --out` writes shards
that import into the same collection, and a given --ray-address is joined, never started."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

ray = pytest.importorskip("ray")

from xmodal.cli import main  # noqa: E402
from xmodal.distributed.ray_encode import plan_pool, ray_reader  # noqa: E402
from xmodal.engine.collection import Collection  # noqa: E402
from xmodal.errors import DeviceError  # noqa: E402


@pytest.fixture(scope="session")
def ray_cluster():
    """A real two-CPU Ray cluster for the session: its address, for other processes."""
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def folder(tmp_path_factory, photos):
    """Four real photos, a copy of one of them, a caption and a file that is no image."""
    out = tmp_path_factory.mktemp("photos")
    for photo in photos[:4]:
        shutil.copy(photo.path, out / photo.path.name)
    shutil.copy(photos[0].path, out / "copy.png")
    (out / photos[1].path.with_suffix(".txt").name).write_text("captioned")
    (out / "broken.png").write_bytes(b"not a png at all")
    return out


@pytest.fixture(scope="module")
def local(tmp_path_factory, folder, lite):
    collection = Collection.open(tmp_path_factory.mktemp("local") / "db", lite)
    report = collection.index([folder])
    assert report.added == 5 and len(report.skipped) == 1
    yield collection
    collection.close()


def _same_collection(mine: Collection, theirs: Collection) -> None:
    """Same ids, rows and vectors (cosine >= 0.9999 per item), same search results."""
    assert mine.count() == theirs.count()
    ids = [hit.id for hit in theirs.search_text("a photo", k=100)]
    assert sorted(ids) == list(range(1, theirs.count() + 1))
    for item_id in ids:
        a, b = mine.get(item_id), theirs.get(item_id)
        assert (a.path, a.size, a.width, a.height, a.caption) == (
            b.path,
            b.size,
            b.width,
            b.height,
            b.caption,
        )
        assert float(mine.vector(item_id) @ theirs.vector(item_id)) >= 0.9999
    for query in ("a cat", "an astronaut", "coffee"):
        assert [h.id for h in mine.search_text(query, k=3)] == [
            h.id for h in theirs.search_text(query, k=3)
        ]


def test_index_with_ray_equals_in_process_and_reencodes_nothing_unchanged(
    ray_cluster, tmp_path, folder, local
):
    with Collection.open(tmp_path / "db", "lite") as collection:
        plans = []
        report = collection.index([folder], reader=ray_reader("lite", on_plan=plans.append))
        assert (report.added, report.embedded) == (5, 4)  # the copy shares its source's vector
        assert [os.path.basename(p) for p, _ in report.skipped] == ["broken.png"]
        assert plans[0].size == 1  # two CPUs: one actor, one CPU left to decoding
        _same_collection(collection, local)
        again = collection.index([folder], reader=ray_reader("lite"))
        assert (again.added, again.unchanged, again.embedded) == (0, 5, 0)
        # A renamed file is moved, not encoded again.
        os.rename(folder / "copy.png", folder / "renamed.png")
        try:
            moved = collection.index([folder], reader=ray_reader("lite"))
        finally:
            os.rename(folder / "renamed.png", folder / "copy.png")
        assert (moved.moved, moved.embedded) == (1, 0)


def test_cli_shards_round_trip_through_import(ray_cluster, tmp_path, folder, local):
    runner = CliRunner()
    shards = tmp_path / "shards"
    result = runner.invoke(
        main, ["embed", "image", str(folder), "--engine", "ray", "--out", str(shards)]
    )
    assert result.exit_code == 1  # broken.png is skipped, and said so
    assert "skipping" in result.output and "broken.png" in result.output
    assert "wrote 5 768-d embeddings of lite" in result.output
    db = tmp_path / "db"
    result = runner.invoke(main, ["import", str(shards), "--db", str(db)])
    assert result.exit_code == 0, result.output
    with Collection.open(db, create=False) as imported:
        _same_collection(imported, local)
    refused = runner.invoke(main, ["import", str(shards), "--db", str(tmp_path / "fake")])
    assert refused.exit_code == 0  # a new collection takes the shards' model
    with Collection.open(tmp_path / "other", "fake:16"):
        pass
    mismatch = runner.invoke(main, ["import", str(shards), "--db", str(tmp_path / "other")])
    assert mismatch.exit_code == 1 and "fake:16" in mismatch.output
    assert "Traceback" not in mismatch.output


def test_a_given_address_is_joined_not_started(ray_cluster, tmp_path, folder, local):
    db = tmp_path / "db"
    env = {**os.environ, "RAY_ADDRESS": ""}
    command = [sys.executable, "-m", "xmodal", "index", str(folder), "--db", str(db)]
    command += ["--engine", "ray", "--ray-address", ray_cluster]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "added 5" in done.stdout
    assert "Started a local Ray instance" not in done.stderr
    assert ray.is_initialized() and ray.cluster_resources().get("CPU") == 2  # still up
    with Collection.open(db, create=False) as collection:
        _same_collection(collection, local)


def test_without_an_address_a_local_cluster_is_started_for_the_command(tmp_path, folder):
    shards = tmp_path / "shards"
    env = {**os.environ, "RAY_ADDRESS": ""}
    command = [sys.executable, "-m", "xmodal", "embed", "image", str(folder / "copy.png")]
    command += ["--engine", "ray", "--out", str(shards)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Started a local Ray instance" in done.stderr
    assert "wrote 1 768-d embeddings of lite" in done.stderr


def test_an_address_nothing_listens_at_fails_fast_and_clearly(tmp_path, folder):
    command = [sys.executable, "-m", "xmodal", "index", str(folder), "--db", str(tmp_path / "d")]
    command += ["--engine", "ray", "--ray-address", "127.0.0.1:9"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "error: cannot reach Ray at 127.0.0.1:9" in done.stderr
    assert "Traceback" not in done.stderr


def test_options_that_cannot_work_are_refused(tmp_path, folder):
    runner = CliRunner()
    result = runner.invoke(main, ["index", str(folder), "--ray-address", "127.0.0.1:1"])
    assert result.exit_code == 2 and "--ray-address needs --engine ray" in result.output
    result = runner.invoke(main, ["embed", "image", str(folder), "--engine", "ray"])
    assert result.exit_code == 2 and "--out" in result.output


def test_pool_size_follows_cores_threads_and_gpus():
    two = plan_pool(2, 0, "cpu")
    assert (two.size, two.num_cpus, two.threads) == (1, 1, 1)
    sixteen = plan_pool(16, 0, "cpu")
    assert (sixteen.size, sixteen.threads) == (3, 4)  # 15 CPUs beside decoding, 4 per model
    assert plan_pool(16, 0, "cpu", threads=1).size == 15
    gpus = plan_pool(32, 4, "cuda")
    assert (gpus.size, gpus.num_gpus) == (4, 1)
    assert plan_pool(1, 0, "cpu").num_cpus == 0  # one CPU: the actor reserves none
    with pytest.raises(DeviceError, match="no GPU"):
        plan_pool(8, 0, "cuda")
