"""The applications over HTTP, on a real uvicorn server with the real `lite` model: hybrid
search, moderation of uploads, stored verdicts, answers and descriptions."""

from __future__ import annotations

import json
import shutil

import httpx
import pytest

from live_server import live_server
from xmodal.engine.collection import Collection
from xmodal.moderation import Moderator
from xmodal.samples import OPENCLIPART_ROOT
from xmodal.server import ServerSettings, create_app

pytestmark = pytest.mark.slow
GUN = OPENCLIPART_ROOT / "tools" / "weapons" / "9_mm_gun_01.png"


@pytest.fixture(scope="module")
def library(tmp_path_factory, photo_by_name, lite):
    """Photos with captions, a gun drawing (judged: flagged), and a text note."""
    base = tmp_path_factory.mktemp("apps")
    root = base / "library"
    root.mkdir()
    for name in ("clock", "rocket", "chelsea", "horse"):
        shutil.copy(photo_by_name[name].path, root / f"{name}.png")
    (root / "clock.txt").write_text("the station clock of the Blue Heron cafe", encoding="utf-8")
    (root / "rocket.txt").write_text("the launch was delayed by rain", encoding="utf-8")
    (root / "diary.md").write_text("# Monday\nWe rode the night train to Varanasi.", "utf-8")
    shutil.copy(GUN, root / "gun.png")
    with Collection.open(base / "db", lite) as collection:
        collection.index([root], moderation=Moderator(lite))
    return base


@pytest.fixture(scope="module")
def server(library, lite):
    app = create_app(ServerSettings(db=library / "db"), encoder=lite)
    with live_server(app) as url, httpx.Client(base_url=url, timeout=120) as client:
        yield client


def names(reply) -> list[str]:
    assert reply.status_code == 200, reply.text
    return [h["path"] for h in reply.json()["results"]]


def test_hybrid_search_over_http(server):
    reply = server.get("/search", params={"q": "Blue Heron", "k": 3})
    assert names(reply)[0] == "clock.png"
    best = reply.json()["results"][0]
    assert best["text"] == "the station clock of the Blue Heron cafe"
    assert best["text_score"] > 0 and best["vector_score"] is not None
    assert names(server.get("/search", params={"q": "launch delayed", "mode": "text"})) == [
        "rocket.png"
    ]
    text_items = server.get("/search", params={"q": "train", "type": "text"}).json()["results"]
    assert [(h["path"], h["type"]) for h in text_items] == [("diary.md", "text")]
    posted = server.post("/search", data={"text": "Blue Heron", "mode": "hybrid", "k": "1"})
    assert names(posted) == ["clock.png"]


def test_bad_search_options_are_422(server):
    for params in (
        {"q": "cat", "mode": "fuzzy"},
        {"q": "cat", "fusion": "rrf:k=0"},
        {"q": "cat", "type": "smell"},
        {"q": "  "},
        {"like": 1, "mode": "text"},
    ):
        reply = server.get("/search", params=params)
        assert reply.status_code == 422, (params, reply.text)


def test_flagged_items_are_hidden_from_search_unless_asked(server):
    assert "gun.png" not in names(server.get("/search", params={"q": "a gun", "k": 20}))
    shown = names(server.get("/search", params={"q": "a gun", "k": 20, "include_flagged": True}))
    assert "gun.png" in shown
    hits = server.get("/search", params={"q": "a gun", "include_flagged": True}).json()
    gun_id = next(h["id"] for h in hits["results"] if h["path"] == "gun.png")
    assert server.get(f"/items/{gun_id}").json()["flagged"] == ["weapons"]


def test_moderate_uploads(server, photo_by_name):
    files = [
        ("file", ("gun.png", GUN.read_bytes(), "image/png")),
        ("file", ("horse.png", photo_by_name["horse"].path.read_bytes(), "image/png")),
    ]
    reply = server.post("/moderate", files=files)
    assert reply.status_code == 200, reply.text
    gun, horse = reply.json()["results"]
    assert (gun["file"], gun["safe"], gun["flagged"]) == ("gun.png", False, ["weapons"])
    assert horse["safe"] and "nsfw" in horse["scores"]
    bad = server.post("/moderate", files=[("file", ("x.png", b"not an image", "image/png"))])
    assert bad.status_code == 422
    text = server.post("/moderate", files=[("file", ("x.txt", b"hello", "text/plain"))])
    assert text.status_code == 415


def test_ask_lists_the_sources_the_answer_comes_from(server):
    reply = server.post(
        "/ask", json={"question": "When was the launch delayed?", "generate": False}
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["answer"] is None
    assert body["sources"][0]["path"] == "rocket.png"
    assert "[1] " in body["context"] and "delayed by rain" in body["context"]
    bad = server.post("/ask", json={"question": "x", "where": {"size": {"~": 1}}})
    assert bad.status_code == 422
    assert server.post("/ask", json={"question": "   "}).status_code == 422
    assert server.post("/ask", json={"question": "x", "item": 10**9}).status_code == 404


def test_ask_streams_an_answer_from_the_packaged_model(server):
    body = {"question": "Why was the launch delayed?", "stream": True, "max_tokens": 40}
    with server.stream("POST", "/ask", json=body) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in reply.iter_lines() if line]
    assert lines[0]["sources"][0]["path"] == "rocket.png"
    assert any("text" in line for line in lines[1:-1])
    assert lines[-1]["done"] and lines[-1]["answer"]


def test_describe_an_upload(server, photo_by_name):
    files = [("file", ("horse.png", photo_by_name["horse"].path.read_bytes(), "image/png"))]
    reply = server.post("/describe", files=files, data={"generate": "false"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert "horse" in body["sentence"].lower()
    assert {"object", "scene"} <= {c["group"] for c in body["concepts"]}
    assert body["neighbours"] == []  # no captioned item of the collection looks like it
    # The indexed clock photo lends its caption to an upload of the same picture.
    files = [("file", ("c.png", photo_by_name["clock"].path.read_bytes(), "image/png"))]
    body = server.post("/describe", files=files, data={"generate": "false"}).json()
    assert body["neighbours"][0]["path"] == "clock.png"
    assert "station clock" in body["sentence"]
    bad = server.post("/describe", files=[("file", ("x.png", b"GIF89a-", "image/png"))])
    assert bad.status_code == 422
