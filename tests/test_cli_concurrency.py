"""`xmodal index` next to another writer: a clear refusal with exit code 75, or --wait."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from xmodal.cli import main
from xmodal.cli.common import EXIT_BUSY
from xmodal.engine.collection import Collection
from xmodal.engine.lock import WriterLock


@pytest.fixture
def collection_and_photos(tmp_path, photos):
    """A collection (fake model) with two photos indexed, and a folder of three more."""
    first, more = tmp_path / "first", tmp_path / "more"
    first.mkdir()
    more.mkdir()
    for p in photos[:2]:
        shutil.copy(p.path, first / p.path.name)
    for p in photos[2:5]:
        shutil.copy(p.path, more / p.path.name)
    db = tmp_path / "db"
    result = CliRunner().invoke(main, ["index", str(first), "--db", str(db), "-m", "fake"])
    assert result.exit_code == 0, result.output
    return db, more


def _index(db, folder, *flags: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "xmodal", "index", str(folder), "--db", str(db), *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TQDM_DISABLE": "1"},
    )


def test_second_writer_exits_75_with_one_line(collection_and_photos):
    db, more = collection_and_photos
    with WriterLock(db).hold(wait=False):  # this process is "the other indexer"
        proc = _index(db, more)
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == EXIT_BUSY == 75
    assert out == ""
    assert err.startswith("error: ") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    with Collection.open(db, create=False) as collection:
        assert collection.count() == 2  # nothing half-written


def test_wait_says_so_then_indexes_once_the_writer_is_done(collection_and_photos):
    db, more = collection_and_photos
    lock = WriterLock(db)
    with lock.hold(wait=False):
        proc = _index(db, more, "--wait")
        line = proc.stderr.readline()  # blocks until the waiting process says why
        assert "waiting for another process" in line
        assert proc.poll() is None  # still waiting while the lock is held
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "added 3" in out
    with Collection.open(db, create=False) as collection:
        assert collection.count() == 5
