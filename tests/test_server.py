"""The HTTP service against a real uvicorn server on loopback, with the real `lite` model and
the real sample photos: every endpoint, its bad inputs, the API key and traversal attempts."""

from __future__ import annotations

import concurrent.futures
import io
import shutil

import httpx
import numpy as np
import pytest
from PIL import Image

from live_server import live_server
from xmodal.engine.collection import Collection
from xmodal.errors import InvalidInputError
from xmodal.server import ServerSettings, check_bind, create_app

pytestmark = pytest.mark.slow


def png_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def library(tmp_path_factory, photos, lite):
    """A collection of the 14 photos, plus a link to a photo outside the indexed folder."""
    base = tmp_path_factory.mktemp("library")
    root = base / "photos"
    root.mkdir()
    for p in photos:
        shutil.copy(p.path, root / p.path.name)
    outside = base / "outside"
    outside.mkdir()
    Image.new("RGB", (64, 48), "red").save(outside / "secret.png")
    (root / "link.png").symlink_to(outside / "secret.png")
    with Collection.open(base / "db", lite) as collection:
        collection.index([root], follow_symlinks=True)
        assert collection.count() == 15
    return base


@pytest.fixture(scope="module")
def server(library, lite):
    app = create_app(ServerSettings(db=library / "db", max_upload_bytes=4 * 2**20), encoder=lite)
    with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client


def upload(path, name=None, content_type="image/png"):
    return ("file", (name or path.name, path.read_bytes(), content_type))


def ids_by_name(client) -> dict[str, int]:
    hits = client.get("/search", params={"q": "a photo", "k": 1000}).json()["results"]
    return {h["path"]: h["id"] for h in hits}


# -- model endpoints -----------------------------------------------------------------------


def test_embed_text_matches_the_library(server, lite):
    r = server.post("/embed/text", json={"texts": ["a cat", "बिल्ली की फोटो"]})
    assert r.status_code == 200
    body = r.json()
    assert (body["model"], body["dim"]) == ("lite", lite.dim)
    got = np.array(body["embeddings"], dtype=np.float32)
    np.testing.assert_allclose(got, lite.embed_texts(["a cat", "बिल्ली की फोटो"]), atol=1e-5)


def test_embed_image_keeps_order(server, lite, photo_by_name):
    cat, rocket = photo_by_name["chelsea"].path, photo_by_name["rocket"].path
    r = server.post("/embed/image", files=[upload(cat), upload(rocket)])
    assert r.status_code == 200
    got = np.array(r.json()["embeddings"], dtype=np.float32)
    np.testing.assert_allclose(got, lite.embed_images([cat, rocket]), atol=1e-5)


def test_similarity_prefers_the_matching_text(server, lite, photo_by_name):
    cat = photo_by_name["chelsea"].path
    scores = {
        text: server.post("/similarity", data={"text": text}, files=[upload(cat)]).json()
        for text in ["a photo of a cat", "a rocket launch"]
    }
    assert scores["a photo of a cat"]["cosine"] > scores["a rocket launch"]["cosine"]
    s = scores["a photo of a cat"]
    assert s["score"] == pytest.approx(s["cosine"] * lite.logit_scale)


def test_classify_ranks_cat_first(server, photo_by_name):
    r = server.post(
        "/classify",
        data={"labels": "cat, dog, car, airplane, flower, person"},
        files=[upload(photo_by_name["chelsea"].path)],
    )
    assert r.status_code == 200
    labels = r.json()["labels"]
    assert labels[0]["label"] == "cat"
    assert sum(x["probability"] for x in labels) == pytest.approx(1, abs=1e-4)


# -- search ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query, expected",
    [("a cat", "chelsea.png"), ("बिल्ली की फोटो", "chelsea.png"), ("a cup of coffee", "coffee.png")],
)
def test_text_search_finds_the_photo_first(server, query, expected):
    r = server.get("/search", params={"q": query, "k": 3})
    assert r.status_code == 200
    results = r.json()["results"]
    assert results[0]["path"] == expected
    assert [h["score"] for h in results] == sorted((h["score"] for h in results), reverse=True)
    assert results[0]["thumbnail"] == f"/items/{results[0]['id']}/thumbnail"


def test_image_search_and_more_like_this(server, photo_by_name):
    coffee = photo_by_name["coffee"].path
    by_upload = server.post("/search", files=[upload(coffee)], data={"k": "2"}).json()
    assert by_upload["results"][0]["path"] == "coffee.png"
    assert by_upload["results"][0]["score"] == pytest.approx(1, abs=1e-4)
    coffee_id = by_upload["results"][0]["id"]
    like = server.get("/search", params={"like": coffee_id, "k": 1}).json()
    assert like["results"][0]["id"] == coffee_id


def test_weighted_mix_and_negative(server, photo_by_name):
    cat = photo_by_name["chelsea"].path
    plain = server.post("/search", data={"text": "an animal", "k": "15"}).json()["results"]
    pushed = server.post(
        "/search",
        data={"text": "an animal", "negative": "a cat", "negative_weight": "2", "k": "15"},
    ).json()["results"]
    rank = {h["path"]: i for i, h in enumerate(pushed)}
    assert rank["chelsea.png"] > [h["path"] for h in plain].index("chelsea.png")
    mixed = server.post(
        "/search", data={"text": "a rocket", "image_weight": "3"}, files=[upload(cat)]
    ).json()
    assert mixed["results"][0]["path"] == "chelsea.png"
    assert mixed["query"] == "+text:a rocket +3*image:chelsea.png"


def test_k_and_threshold(server):
    everything = server.get("/search", params={"q": "a cat", "k": 1000}).json()["results"]
    assert len(everything) == 15
    cut = everything[3]["score"]
    above = server.get("/search", params={"q": "a cat", "k": 1000, "threshold": cut}).json()
    assert [h["id"] for h in above["results"]] == [h["id"] for h in everything[:4]]


# -- items, files, thumbnails ------------------------------------------------------------------


def test_thumbnail_and_file(server, photo_by_name):
    ids = ids_by_name(server)
    r = server.get(f"/items/{ids['chelsea.png']}/thumbnail", params={"size": 128})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    thumb = Image.open(io.BytesIO(r.content))
    assert max(thumb.size) == 128
    r = server.get(f"/items/{ids['chelsea.png']}/file")
    assert r.status_code == 200
    assert r.content == photo_by_name["chelsea"].path.read_bytes()
    info = server.get(f"/items/{ids['chelsea.png']}").json()
    assert (info["path"], info["width"], info["height"]) == ("chelsea.png", 451, 300)


def test_upload_search_delete(server, library, photo_by_name):
    before = server.get("/healthz").json()["items"]
    flipped = Image.open(photo_by_name["rocket"].path).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    files = [("file", ("my rocket.png", png_bytes(flipped), "image/png"))]
    r = server.post("/items", files=files)
    assert r.status_code == 201, r.text
    item = r.json()
    assert server.get("/healthz").json()["items"] == before + 1
    stored = library / "db" / "uploads" / item["path"]
    assert stored.is_file()
    hits = server.get("/search", params={"q": "a rocket", "k": 3}).json()["results"]
    assert item["id"] in [h["id"] for h in hits]
    assert server.get(f"/items/{item['id']}/file").content == png_bytes(flipped)
    assert server.delete(f"/items/{item['id']}").status_code == 204
    assert server.get(f"/items/{item['id']}").status_code == 404
    assert server.delete(f"/items/{item['id']}").status_code == 404
    assert not stored.exists()
    assert server.get("/healthz").json()["items"] == before


def test_add_by_server_path(server, library, photo_by_name):
    inside = library / "photos" / "sub"
    inside.mkdir(exist_ok=True)
    target = inside / "cat again.png"
    Image.open(photo_by_name["chelsea"].path).rotate(3).save(target)
    r = server.post("/items", data={"path": str(target)}, files={"x": ("", b"", "text/plain")})
    assert r.status_code == 201, r.text
    assert r.json()["path"] == "sub/cat again.png"
    assert server.delete(f"/items/{r.json()['id']}").status_code == 204
    outside = library / "outside" / "secret.png"
    r = server.post("/items", data={"path": str(outside)}, files={"x": ("", b"", "text/plain")})
    assert r.status_code == 403
    traversal = str(library / "photos" / ".." / "outside" / "secret.png")
    r = server.post("/items", data={"path": traversal}, files={"x": ("", b"", "text/plain")})
    assert r.status_code == 403


def test_metadata_and_filtered_search(server):
    ids = ids_by_name(server)
    for n, name in enumerate(["coffee.png", "rocket.png"]):
        r = server.put(f"/items/{ids[name]}/metadata", json={"album": "trip", "n": n})
        assert r.status_code == 200 and r.json()["metadata"]["album"] == "trip"
    hits = server.get("/search", params={"q": "a cat", "where": '{"album": "trip"}'}).json()
    assert {h["path"] for h in hits["results"]} == {"coffee.png", "rocket.png"}
    form = {"text": "a cat", "where": '{"album": "trip", "n": 1}'}
    assert [h["path"] for h in server.post("/search", data=form).json()["results"]] == [
        "rocket.png"
    ]
    for bad in ["[1]", "{nope", '{"a": null}']:
        r = server.get("/search", params={"q": "a cat", "where": bad})
        assert r.status_code == 422, r.text
    assert server.put("/items/987654/metadata", json={"a": 1}).status_code == 404
    assert server.put(f"/items/{ids['coffee.png']}/metadata", json=[1]).status_code == 422
    for name in ["coffee.png", "rocket.png"]:
        server.put(f"/items/{ids[name]}/metadata", json={})


def test_traversal_and_links_out_are_not_served(server):
    ids = ids_by_name(server)
    link = ids["link.png"]  # indexed through a link that leaves the folder
    assert server.get(f"/items/{link}/file").status_code == 403
    assert server.get(f"/items/{link}/thumbnail").status_code == 403
    for path in ["/items/../../etc/passwd", "/items/%2e%2e%2f%2e%2e%2fetc%2fpasswd/file"]:
        r = server.get(path)
        assert r.status_code in (404, 422)
        assert b"root:" not in r.content
    assert server.get("/items/-1/file").status_code == 422
    assert server.get("/items/99999999999999999999999/file").status_code == 422
    assert server.get("/items/123456789/file").status_code == 404


# -- bad input: 4xx with a reason, never a 500 ---------------------------------------------


def test_bad_inputs(server, photo_by_name):
    cat = photo_by_name["chelsea"].path
    cases = [
        (server.post("/embed/text", json={"texts": []}), 422),
        (server.post("/embed/text", json={"texts": ["  "]}), 422),
        (server.post("/embed/text", json={"text": "a cat"}), 422),
        (server.post("/embed/text", content=b"{not json", headers=_json), 422),
        (server.post("/embed/text", data={"texts": "a cat"}), 415),
        (server.post("/embed/image", files=[upload(cat, "notes.txt", "text/plain")]), 415),
        (
            server.post("/embed/image", files=[("file", ("x.png", b"not an image", "image/png"))]),
            422,
        ),
        (
            server.post(
                "/embed/image", files=[("file", ("x.png", cat.read_bytes()[:3000], "image/png"))]
            ),
            422,
        ),
        (server.post("/embed/image", json={"file": "x"}), 415),
        (server.post("/classify", data={"labels": "cat"}, files=[upload(cat)]), 422),
        (server.get("/search"), 422),
        (server.get("/search", params={"q": "cat", "k": 0}), 422),
        (server.get("/search", params={"q": ""}), 422),
        (server.get("/search", params={"q": "cat", "threshold": "nan"}), 422),
        (server.get("/search", params={"like": 987654321}), 404),
        (server.post("/search", data={"negative": "a cat"}), 422),
        (server.post("/items", files=[("file", ("x.png", b"\x89PNG\r\n", "image/png"))]), 422),
    ]
    for response, status in cases:
        assert response.status_code == status, (response.request.url, response.text)
        assert response.json()["detail"]


_json = {"content-type": "application/json"}


def test_upload_limits(server):
    noise = np.random.default_rng(0).integers(0, 256, (1500, 1500, 3), dtype=np.uint8)
    big = png_bytes(Image.fromarray(noise))
    assert len(big) > 4 * 2**20
    r = server.post("/embed/image", files=[("file", ("big.png", big, "image/png"))])
    assert r.status_code == 413
    # a small file that declares too many pixels (a decompression bomb)
    bomb = png_bytes(Image.new("1", (10_000, 6_000)))
    r = server.post("/embed/image", files=[("file", ("bomb.png", bomb, "image/png"))])
    assert r.status_code == 413, r.text
    assert "pixels" in r.json()["detail"]

    def chunks():
        for _ in range(80):
            yield b"x" * 65536

    r = server.post("/embed/text", content=chunks(), headers=_json)
    assert r.status_code == 413


# -- concurrency: micro-batching, searches during additions -------------------------------------


def test_concurrent_requests_share_model_calls(server, lite):
    texts = [f"a photo of {i} cats on a sofa" for i in range(24)]
    with concurrent.futures.ThreadPoolExecutor(24) as pool:
        replies = list(
            pool.map(lambda t: server.post("/embed/text", json={"texts": [t]}).json(), texts)
        )
    got = np.array([r["embeddings"][0] for r in replies], dtype=np.float32)
    np.testing.assert_allclose(got, lite.embed_texts(texts), atol=1e-5)
    metrics = server.get("/metrics").text
    sizes = _histogram(metrics, "xmodal_model_batch_size", 'modality="text"')
    assert sizes["count"] < sizes["sum"], "some model call must have served several requests"


def _histogram(text: str, name: str, label: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        for part in ("count", "sum"):
            if line.startswith(f"{name}_{part}{{") and label in line:
                out[part] = float(line.rsplit(" ", 1)[1])
    return out


def test_searches_keep_working_while_items_are_added(server, photo_by_name):
    base = Image.open(photo_by_name["astronaut"].path)
    images = [png_bytes(base.rotate(angle)) for angle in (5, 10, 15, 20)]

    def add(data):
        return server.post("/items", files=[("file", ("a.png", data, "image/png"))])

    def search(_):
        return server.get("/search", params={"q": "a cup of coffee", "k": 1})

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        adds = [pool.submit(add, d) for d in images]
        searches = [pool.submit(search, i) for i in range(16)]
        added = [f.result() for f in adds]
        found = [f.result() for f in searches]
    assert all(r.status_code == 201 for r in added)
    assert all(r.status_code == 200 for r in found)
    assert all(r.json()["results"][0]["path"] == "coffee.png" for r in found)
    for r in added:
        assert server.delete(f"/items/{r.json()['id']}").status_code == 204


def test_metrics_and_health(server):
    server.get("/search", params={"q": "a cat"})
    health = server.get("/healthz").json()
    assert health["status"] == "ok" and health["items"] >= 15
    text = server.get("/metrics").text
    assert 'xmodal_http_requests_total{method="GET",route="/search",status="200"}' in text
    assert "xmodal_http_request_seconds_bucket" in text
    assert f"xmodal_collection_items {float(health['items'])}" in text


def test_openapi_and_page(server):
    spec = server.get("/openapi.json").json()
    for path in ["/embed/text", "/embed/image", "/similarity", "/search", "/classify", "/items"]:
        assert path in spec["paths"]
    page = server.get("/")
    assert page.status_code == 200 and 'id="q"' in page.text
    assert server.get("/static/app.js").status_code == 200


# -- the API key -------------------------------------------------------------------------------


def test_api_key_guards_reads_and_writes(library, lite, photo_by_name):
    settings = ServerSettings(db=library / "db", api_key="s3cret")
    app = create_app(settings, encoder=lite)
    files = [upload(photo_by_name["moon"].path, "moon copy.png")]
    with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        assert client.post("/items", files=files).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert client.post("/items", files=files, headers=wrong).status_code == 401
        assert client.get("/search", params={"q": "the moon"}).status_code == 401
        r = client.get("/search", params={"q": "the moon"}, headers={"X-API-Key": "s3cret"})
        assert r.status_code == 200
        r = client.post("/items", files=files, headers={"X-API-Key": "s3cret"})
        assert r.status_code == 201
        item = r.json()["id"]
        assert client.delete(f"/items/{item}").status_code == 401
        bearer = {"Authorization": "Bearer s3cret"}
        assert client.delete(f"/items/{item}", headers=bearer).status_code == 204


def test_refuses_public_bind_without_key():
    with pytest.raises(InvalidInputError, match="XMODAL_API_KEY"):
        check_bind("0.0.0.0", None)
    check_bind("0.0.0.0", "key")
    for host in ["127.0.0.1", "localhost", "::1", "127.0.0.2"]:
        check_bind(host, None)
