"""POST /generate on a live server with the real lite model: a small drawing, and refusals."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from PIL import Image

from live_server import live_server
from xmodal.engine.collection import Collection
from xmodal.server import ServerSettings, create_app


@pytest.fixture(scope="module")
def server(tmp_path_factory, lite, photos):
    db = tmp_path_factory.mktemp("generate") / "db"
    with Collection.open(db, lite) as collection:
        collection.index([photos[0].path])
    app = create_app(ServerSettings(db=db), encoder=lite)
    with live_server(app) as url, httpx.Client(base_url=url, timeout=300) as client:
        yield client


def test_a_drawing_comes_back_as_a_png_closer_to_its_prompt(server, lite):
    body = {"prompt": "a red apple", "steps": 8, "size": 64, "cutouts": 4, "seed": 3}
    reply = server.post("/generate", json=body)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(reply.content))
    assert image.size == (64, 64)
    start, end = float(reply.headers["x-similarity-start"]), float(reply.headers["x-similarity"])
    assert end > start + 0.03
    # The header tells the truth: the model's own similarity of the returned image.
    own = float(lite.embed_images([image.convert("RGB")])[0] @ lite.embed_texts(["a red apple"])[0])
    assert abs(own - end) < 0.1
    again = server.post("/generate", json=body)
    assert np.array_equal(np.asarray(image), np.asarray(Image.open(io.BytesIO(again.content))))


@pytest.mark.parametrize(
    "body",
    [
        {"prompt": ""},
        {"prompt": "a cat", "steps": 0},
        {"prompt": "a cat", "steps": 100_000},
        {"prompt": "a cat", "size": 4096},
        {"prompt": "a cat", "drawer": "crayons"},
        {"prompt": "   "},
        {"prompt": "a cat", "negatives": [""]},
    ],
)
def test_bad_requests_are_422_with_a_reason(server, body):
    reply = server.post("/generate", json=body)
    assert reply.status_code == 422, reply.text
    assert reply.json()["detail"]


def test_a_form_post_is_refused(server):
    reply = server.post("/generate", data={"prompt": "a cat"})
    assert reply.status_code == 415
