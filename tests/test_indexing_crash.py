"""Indexing killed with SIGKILL at the worst moments, then resumed: nothing lost, nothing doubled.

The run under test is a real `python -c` process using the Collection API with the fake encoder
(slowed per batch so the kill lands between batches); the result is compared with an
uninterrupted run into another database.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from PIL import Image

from xmodal.engine.collection import INDEX_FILE, Collection
from xmodal.models.fake import FakeEncoder

pytestmark = pytest.mark.slow

CHILD = textwrap.dedent(
    """
    import os, sys, time
    from xmodal.catalog import Catalog
    from xmodal.engine.collection import Collection
    from xmodal.models.fake import FakeEncoder

    db, folder, mode, marker = sys.argv[1:5]

    class SlowFake(FakeEncoder):
        def _encode_images(self, images):
            time.sleep(0.25)  # a real model's time per batch: lets the kill land mid-run
            return super()._encode_images(images)

    def hang_here():
        open(marker, "w").close()
        time.sleep(600)

    if mode == "before_replace":  # the new index file is written, not yet renamed into place
        real_replace = os.replace
        def replace(src, dst):
            if str(dst).endswith("vectors.index"):
                hang_here()
            real_replace(src, dst)
        os.replace = replace
    elif mode == "after_replace":  # renamed into place, its generation not yet recorded
        real_set_meta = Catalog.set_meta
        def set_meta(self, key, value, **kw):
            if key == "index_generation":
                hang_here()
            real_set_meta(self, key, value, **kw)
        Catalog.set_meta = set_meta

    encoder = SlowFake(32) if mode == "slow" else FakeEncoder(32)
    with Collection.open(db, encoder) as c:
        c.index([folder], batch_size=4)
    """
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory, photos) -> Path:
    """44 images in two subfolders: 14 photos x 3 variants, and 2 exact copies."""
    root = tmp_path_factory.mktemp("crash_library")
    for i, p in enumerate(photos):
        part = root / ("part1" if i < 7 else "part2")
        part.mkdir(exist_ok=True)
        image = Image.open(p.path).convert("RGB")
        image.thumbnail((160, 160))
        image.save(part / f"{p.name}.png")
        image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(part / f"{p.name}_flipped.png")
        image.rotate(90, expand=True).save(part / f"{p.name}_turned.jpg", quality=85)
    shutil.copy(root / "part1" / "chelsea.png", root / "part2" / "chelsea again.png")
    shutil.copy(root / "part2" / "horse.png", root / "part1" / "horse again.png")
    return root


def snapshot(db: Path, queries) -> tuple:
    """Count, paths, and every query's full ranking (ties ordered by path)."""
    with Collection.open(db, create=False) as c:
        rankings = [
            sorted((-round(h.score, 4), h.path) for h in hits)
            for hits in c.search_vectors(queries, k=1000)
        ]
        paths = sorted(h.path for h in c.search_vectors(queries[:1], k=1000)[0])
        return c.count(), paths, rankings


@pytest.fixture(scope="module")
def reference(tmp_path_factory, folder):
    db = tmp_path_factory.mktemp("reference") / "db"
    with Collection.open(db, FakeEncoder(32)) as c:
        report = c.index([folder])
        assert (report.added, report.embedded) == (44, 42)
        queries = c._catalog.vectors()[1]
    return snapshot(db, queries), queries


def stored_count(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db / 'catalog.sqlite'}?mode=ro", uri=True) as con:
            return con.execute("SELECT count(*) FROM files").fetchone()[0]
    except sqlite3.OperationalError:
        return 0  # not created yet


def run_and_kill(db: Path, folder: Path, mode: str, until) -> None:
    """Start the child, SIGKILL it once until() holds; fail if it finishes first."""
    marker = db.parent / f"{mode}.marker"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db), str(folder), mode, str(marker)],
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not until(marker):
            if child.poll() is not None:
                pytest.fail(f"child ended before the kill: {child.stderr.read().decode()}")
            assert time.monotonic() < deadline, "child made no progress"
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
        child.stderr.close()


def test_killed_between_batches_then_resumed(tmp_path, folder, reference):
    expected, queries = reference
    db = tmp_path / "db"
    run_and_kill(db, folder, "slow", lambda _: stored_count(db) >= 8)
    first = stored_count(db)
    run_and_kill(db, folder, "slow", lambda _: stored_count(db) >= first + 12)
    second = stored_count(db)
    assert 8 <= first < second < 44

    with Collection.open(db, FakeEncoder(32)) as c:
        report = c.index([folder])
    assert (report.added, report.unchanged, report.removed, report.moved) == (
        44 - second,
        second,
        0,
        0,
    )
    assert snapshot(db, queries) == expected


@pytest.mark.parametrize("mode", ["before_replace", "after_replace"])
def test_killed_while_saving_the_index(tmp_path, folder, reference, mode):
    expected, queries = reference
    db = tmp_path / "db"
    with Collection.open(db, FakeEncoder(32)) as c:
        c.index([folder / "part1"])  # leaves an index file that the killed run outdates
    run_and_kill(db, folder, mode, lambda marker: marker.exists())
    assert stored_count(db) == 44
    assert snapshot(db, queries) == expected  # reconciled on open, no re-index
    with Collection.open(db) as c:
        report = c.index([folder])
        assert (report.unchanged, report.embedded) == (44, 0)
    assert snapshot(db, queries) == expected
    assert (db / INDEX_FILE).exists()
    assert os.listdir(db)  # a killed save's temp file may stay: it is ignored
