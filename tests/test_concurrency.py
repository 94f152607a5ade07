"""Collections shared between processes: readers that notice other writers, one writer at a time,
and a server whose searches neither fail nor wait while items are added.

Real processes (`python -m xmodal`, `python -c` on the Collection API) with the fake encoder, a
real uvicorn server on a free port. Where a run must be caught in the middle, its encoder waits
for a file or an event that the test creates only once it has seen what it wants to see.
"""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from live_server import live_server
from xmodal.engine.collection import CATALOG_FILE, Collection
from xmodal.errors import CollectionBusyError
from xmodal.models.fake import FakeEncoder
from xmodal.server import ServerSettings, create_app

# 64 colours, one per bucket of the fake encoder's histogram: 64 distinct vectors.
COLOURS = [
    (r * 64 + 32, g * 64 + 32, b * 64 + 32) for r in range(4) for g in range(4) for b in range(4)
]
POLL_LIMIT_SECONDS = 20  # a bound on waiting for something that should happen in well under 1 s


def make_images(folder: Path, colours, prefix: str = "c") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, colour in colours:
        path = folder / f"{prefix}{i:02d}.png"
        Image.new("RGB", (40, 30), colour).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def folder(tmp_path) -> Path:
    make_images(tmp_path / "photos", list(enumerate(COLOURS[:24])))
    return tmp_path / "photos"


def catalog_rows(db: Path) -> list[bytes]:
    with sqlite3.connect(f"file:{db / CATALOG_FILE}?mode=ro", uri=True) as con:
        return [p for (p,) in con.execute("SELECT path FROM files")]


def until(condition, what: str):
    """Poll condition() until it returns something truthy; fail after POLL_LIMIT_SECONDS."""
    deadline = time.monotonic() + POLL_LIMIT_SECONDS
    while not (result := condition()):
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.02)
    return result


# -- two Collection objects in one process: separate connections, as two processes have --------


def test_a_long_lived_collection_sees_another_writers_changes(tmp_path, folder):
    db = tmp_path / "db"
    with Collection.open(db, FakeEncoder(32)) as reader, Collection.open(db) as writer:
        writer.index([folder])
        assert len(reader.search_text("a photo", k=100)) == 24  # loads the saved index
        gone = folder / "c03.png"
        gone.unlink()
        make_images(folder, [(40, COLOURS[40])])
        writer.index([folder])
        hits = reader.search_text("a photo", k=100)
        assert len(hits) == 24 == reader.count()
        names = {Path(h.path).name for h in hits}
        assert "c03.png" not in names and "c40.png" in names
        new = next(h for h in hits if h.path.endswith("c40.png"))
        assert reader.search_image(folder / "c40.png", k=1)[0].id == new.id


def test_an_id_deleted_between_index_search_and_path_lookup_is_dropped(tmp_path, folder):
    db = tmp_path / "db"
    with Collection.open(db, FakeEncoder(32)) as reader, Collection.open(db) as writer:
        writer.index([folder])
        victim = reader.search_image(folder / "c05.png", k=1)[0]
        in_step = reader._ann.current

        def then_a_writer_deletes():
            index = in_step()
            writer.remove(victim.id)  # after the reader's index was brought in step
            return index

        reader._ann.current = then_a_writer_deletes
        hits = reader.search_image(folder / "c05.png", k=100)
        assert len(hits) == 23 and victim.id not in {h.id for h in hits}


def test_a_saved_index_is_stamped_with_the_generation_it_holds(tmp_path, folder):
    db = tmp_path / "db"
    with Collection.open(db, FakeEncoder(32)) as c:
        c.index([folder])
    make_images(tmp_path / "more", [(50, COLOURS[50])])
    with Collection.open(db) as a, Collection.open(db) as b:
        a.search_text("a photo")  # a's index: loaded
        assert a.remove(a.search_image(folder / "c01.png", k=1)[0].id)
        added = b.add_file(tmp_path / "more" / "c50.png")  # b never loads an index
        # a saves at close: its index lacks b's item, so its stamp must not claim b's generation
    with Collection.open(db) as c:
        assert c.search_image(tmp_path / "more" / "c50.png", k=1)[0].id == added.id
        assert len(c.search_text("a photo", k=100)) == 24 == c.count()


def test_a_second_writer_is_refused_naming_the_holder_or_waits_its_turn(tmp_path, folder):
    db = tmp_path / "db"
    with Collection.open(db, FakeEncoder(32)) as holder, Collection.open(db) as second:
        entered, release = threading.Event(), threading.Event()

        def hold():
            with holder.writer():
                entered.set()
                release.wait(POLL_LIMIT_SECONDS)

        thread = threading.Thread(target=hold)
        thread.start()
        entered.wait(POLL_LIMIT_SECONDS)
        with pytest.raises(CollectionBusyError, match=f"process {os.getpid()}"):
            second.index([folder])
        assert second.count() == 0
        waits = []
        report = second.index([folder], wait=True, on_wait=lambda: (waits.append(1), release.set()))
        thread.join()
        assert waits == [1] and report.added == 24 and second.count() == 24
        assert holder.index([folder]).unchanged == 24


# -- real processes -------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import os, sys, time
    from xmodal.engine.collection import Collection
    from xmodal.models.fake import FakeEncoder

    db, folder, role, marker, go = sys.argv[1:6]

    class Gated(FakeEncoder):
        # The first run stops in its first model batch, holding the lock, until told to go on.
        def _encode_images(self, images):
            if role == "first":
                open(marker, "w").close()
                while not os.path.exists(go):
                    time.sleep(0.01)
            return super()._encode_images(images)

    with Collection.open(db, Gated(32)) as c:
        report = c.index(
            [folder], batch_size=4, wait=role == "waiter",
            on_wait=lambda: print("waiting", flush=True),
        )
    print("done", report.added, report.unchanged, report.removed, flush=True)
    """
)


def start_child(tmp_path: Path, db: Path, folder: Path, role: str) -> subprocess.Popen:
    args = [str(db), str(folder), role, str(tmp_path / "marker"), str(tmp_path / "go")]
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(child: subprocess.Popen) -> str:
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0 and "Traceback" not in err, err
    return out


def test_two_index_runs_at_once_index_every_file_exactly_once(tmp_path, folder):
    db = tmp_path / "db"
    first = start_child(tmp_path, db, folder, "first")
    try:
        until(lambda: (tmp_path / "marker").exists(), "the first run's first batch")
        waiter = start_child(tmp_path, db, folder, "waiter")
        try:
            assert waiter.stdout.readline() == "waiting\n"  # blocked behind the first run
            (tmp_path / "go").touch()
            assert finish(first) == "done 24 0 0\n"
            assert finish(waiter) == "done 0 24 0\n"  # after its wait: nothing left to do
        finally:
            waiter.kill()
            waiter.wait()
    finally:
        first.kill()
        first.wait()
    rows = catalog_rows(db)
    assert len(rows) == len(set(rows)) == 24
    with Collection.open(db) as c:
        assert len(c.search_text("a photo", k=100)) == 24


def test_an_index_run_refused_while_another_writes_says_who_and_fails(tmp_path, folder):
    db = tmp_path / "db"
    first = start_child(tmp_path, db, folder, "first")
    try:
        until(lambda: (tmp_path / "marker").exists(), "the first run's first batch")
        cli = [sys.executable, "-m", "xmodal", "index", "--db", str(db), str(folder)]
        refused = subprocess.run(cli, capture_output=True, text=True, timeout=120)
        assert refused.returncode != 0, refused.stderr
        assert f"being written by process {first.pid}" in refused.stderr
        assert "Traceback" not in refused.stderr
        (tmp_path / "go").touch()
        assert finish(first) == "done 24 0 0\n"
    finally:
        first.kill()
        first.wait()
    again = subprocess.run(cli, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    rows = catalog_rows(db)
    assert len(rows) == len(set(rows)) == 24


# -- the server beside other processes -------------------------------------------------------


def searched_names(client: httpx.Client) -> set[str]:
    r = client.get("/search", params={"q": "a photo", "k": 1000})
    assert r.status_code == 200, r.text
    return {Path(h["path"]).name for h in r.json()["results"]}


def test_the_server_follows_an_index_run_in_another_process(tmp_path, folder):
    db = tmp_path / "db"
    with Collection.open(db, FakeEncoder(32)) as c:
        c.index([folder])
    app = create_app(ServerSettings(db=db), encoder=FakeEncoder(32))
    with live_server(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        before = searched_names(client)
        assert len(before) == 24
        for name in ("c00.png", "c07.png", "c19.png"):
            (folder / name).unlink()
        make_images(folder, [(i, COLOURS[i]) for i in (30, 31)])
        expected = (before - {"c00.png", "c07.png", "c19.png"}) | {"c30.png", "c31.png"}
        cli = [sys.executable, "-m", "xmodal", "index", "--db", str(db), str(folder)]
        run = subprocess.Popen(cli, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        seen = []
        while run.poll() is None:  # searches during the run: every one answers 200
            seen.append(searched_names(client))
        _, err = run.communicate()
        assert run.returncode == 0 and "Traceback" not in err, err
        assert until(lambda: searched_names(client) == expected, "the server to see the run")
        assert all(names <= before | expected for names in seen)
        results = client.get("/search", params={"q": "a photo", "k": 1000}).json()["results"]
        new = next(h for h in results if h["path"].endswith("c30.png"))
        assert client.get(f"/items/{new['id']}/file").status_code == 200


class GatedFake(FakeEncoder):
    """Embedding a large image waits until the test says so: an embedding in flight."""

    def __init__(self):
        super().__init__(32)
        self.embedding, self.release = threading.Event(), threading.Event()

    def _encode_images(self, images):
        if any(im.width >= 1000 for im in images):
            self.embedding.set()
            assert self.release.wait(POLL_LIMIT_SECONDS), "the test never released the upload"
        return super()._encode_images(images)


def test_a_search_answers_while_a_large_upload_is_being_embedded(tmp_path, folder):
    db = tmp_path / "db"
    encoder = GatedFake()
    with Collection.open(db, encoder) as c:
        c.index([folder])
        like = c.search_image(folder / "c02.png", k=1)[0].id
    large = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (1200, 1600, 3), np.uint8)).save(large, "PNG")
    settings = ServerSettings(db=db, max_upload_bytes=64 * 2**20)
    app = create_app(settings, encoder=encoder)
    with (
        live_server(app) as url,
        httpx.Client(base_url=url, timeout=POLL_LIMIT_SECONDS) as client,
        ThreadPoolExecutor(1) as pool,
    ):
        files = [("file", ("large.png", large.getvalue(), "image/png"))]
        upload = pool.submit(client.post, "/items", files=files)
        try:
            assert encoder.embedding.wait(POLL_LIMIT_SECONDS), "the upload never reached the model"
            # The model thread is busy with the upload; a search by item needs no model.
            r = client.get("/search", params={"like": like, "k": 100})
            assert r.status_code == 200 and len(r.json()["results"]) == 24
            assert not upload.done()  # answered while the add was still in flight
        finally:
            encoder.release.set()
        added = upload.result()
        assert added.status_code == 201, added.text
        r = client.get("/search", params={"like": added.json()["id"], "k": 1})
        assert r.json()["results"][0]["id"] == added.json()["id"]


def test_deleting_an_upload_deletes_its_file_with_a_relative_db(tmp_path, folder, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = create_app(ServerSettings(db=Path("db")), encoder=FakeEncoder(32))
    png = io.BytesIO()
    Image.new("RGB", (40, 30), COLOURS[60]).save(png, "PNG")
    with live_server(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        r = client.post("/items", files=[("file", ("new.png", png.getvalue(), "image/png"))])
        assert r.status_code == 201, r.text
        stored = list((tmp_path / "db" / "uploads").iterdir())
        assert len(stored) == 1
        assert client.delete(f"/items/{r.json()['id']}").status_code == 204
        assert not stored[0].exists()
        assert client.get(f"/items/{r.json()['id']}").status_code == 404
