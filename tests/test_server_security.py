"""What a hostile web page, a rebinding DNS name or a client without the key cannot do, against a
real uvicorn server on loopback (the fake encoder: the model does not matter here)."""

from __future__ import annotations

import io
from contextlib import contextmanager

import httpx
import pytest
from PIL import Image
from starlette.routing import Mount, Route

from live_server import live_server
from xmodal.engine.collection import Collection
from xmodal.errors import InvalidInputError
from xmodal.models.fake import FakeEncoder
from xmodal.server import ServerSettings, check_bind, create_app

KEY = "correct horse battery staple"
EVIL = "http://evil.example"
ENCODER = FakeEncoder(dim=32)


def image_bytes(color: str, fmt: str = "PNG", **save) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), color).save(out, fmt, **save)
    return out.getvalue()


def polyglot() -> bytes:
    """A valid GIF that is also an HTML page with a script (its comment block)."""
    data = image_bytes("green", "GIF", comment=b"<html><script>alert(document.domain)</script>")
    assert data.startswith(b"GIF8") and b"<script>" in data
    return data


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    base = tmp_path_factory.mktemp("secure")
    (base / "photos").mkdir()
    for color in ("red", "green", "blue"):
        (base / "photos" / f"{color}.png").write_bytes(image_bytes(color))
    with Collection.open(base / "db", ENCODER) as collection:
        collection.index([base / "photos"])
    return base / "db"


@contextmanager
def serve(db, **settings):
    app = create_app(ServerSettings(db=db, **settings), encoder=ENCODER)
    with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        client.app = app
        yield client


def first_id(client, **kwargs) -> int:
    r = client.get("/search", params={"q": "a photo", "k": 1}, **kwargs)
    assert r.status_code == 200, r.text
    return r.json()["results"][0]["id"]


def add(client, data=None, name="new.png", headers=None):
    files = [("file", (name, data or image_bytes("yellow"), "image/png"))]
    return client.post("/items", files=files, headers=headers or {})


# -- cross-origin writes (CSRF) ------------------------------------------------------------------


def test_cross_origin_writes_are_refused(db):
    with serve(db) as client:
        own = str(client.base_url).rstrip("/")
        count = client.get("/healthz").json()["items"]
        for headers in (
            {"Origin": EVIL},
            {"Origin": "null"},
            {"Sec-Fetch-Site": "cross-site"},
            {"Origin": own.replace("http:", "https:")},
        ):
            r = add(client, headers=headers)
            assert r.status_code == 403, (headers, r.text)
            assert "refused" in r.json()["detail"]
        assert client.get("/healthz").json()["items"] == count

        r = add(client)  # no Origin: curl, scripts
        assert r.status_code == 201, r.text
        item = r.json()["id"]
        for headers in ({"Origin": EVIL}, {"Sec-Fetch-Site": "cross-site"}):
            assert client.delete(f"/items/{item}", headers=headers).status_code == 403
            r = client.put(f"/items/{item}/metadata", json={"a": 1}, headers=headers)
            assert r.status_code == 403
        assert client.get(f"/items/{item}").status_code == 200
        same_origin = {"Origin": own, "Sec-Fetch-Site": "same-origin"}
        r = client.put(f"/items/{item}/metadata", json={"a": 1}, headers=same_origin)
        assert r.status_code == 200
        assert client.delete(f"/items/{item}", headers=same_origin).status_code == 204
        # reads stay possible, but without CORS another origin cannot see the answer
        r = client.get("/healthz", headers={"Origin": EVIL})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


def test_cors_only_for_configured_origins(db):
    app_origin = "http://app.example"
    with serve(db, cors_origins=(app_origin,)) as client:
        preflight = {"Access-Control-Request-Method": "POST"}
        r = client.options("/items", headers={"Origin": app_origin, **preflight})
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == app_origin
        r = client.options("/items", headers={"Origin": EVIL, **preflight})
        assert r.status_code == 400 and "access-control-allow-origin" not in r.headers
        r = add(client, headers={"Origin": app_origin, "Sec-Fetch-Site": "cross-site"})
        assert r.status_code == 201, r.text
        assert r.headers["access-control-allow-origin"] == app_origin
        assert add(client, headers={"Origin": EVIL}).status_code == 403
        assert client.delete(f"/items/{r.json()['id']}").status_code == 204


# -- Host header (DNS rebinding) ------------------------------------------------------------------


def test_foreign_host_is_refused(db):
    with serve(db, allowed_hosts=("photos.example",)) as client:
        for host in ["evil.example", "evil.example:8000", "127.0.0.1.evil.example"]:
            r = client.get("/healthz", headers={"Host": host})
            assert r.status_code == 400, host
            assert "XMODAL_ALLOWED_HOSTS" in r.json()["detail"]
        assert add(client, headers={"Host": "evil.example"}).status_code == 400
        for host in ["127.0.0.1", "localhost:9999", "LOCALHOST", "[::1]:80", "photos.example:8080"]:
            assert client.get("/healthz", headers={"Host": host}).status_code == 200, host


def test_wildcard_bind_accepts_any_host_only_with_a_key(db):
    with serve(db, host="0.0.0.0") as client:
        assert client.get("/healthz", headers={"Host": "nas.lan"}).status_code == 400
        assert client.get("/healthz", headers={"Host": "localhost"}).status_code == 200
    with serve(db, host="0.0.0.0", api_key=KEY) as client:
        assert client.get("/healthz", headers={"Host": "nas.lan:8000"}).status_code == 200
        assert client.get("/search?q=x", headers={"Host": "nas.lan"}).status_code == 401


# -- stored files: typed by content, never rendered ------------------------------------------------


def test_polyglot_upload_is_stored_and_served_as_an_image(db):
    data = polyglot()
    with serve(db) as client:
        r = client.post("/items", files=[("file", ("x.html", data, "image/gif"))])
        assert r.status_code == 201, r.text
        item = r.json()
        stored = db / "uploads" / item["path"]
        assert stored.suffix == ".gif" and stored.read_bytes() == data
        r = client.get(f"/items/{item['id']}/file")
        assert r.status_code == 200 and r.content == data
        assert r.headers["content-type"] == "image/gif"
        assert r.headers["x-content-type-options"] == "nosniff"
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "sandbox" in csp
        assert r.headers["content-disposition"] == f'inline; filename="{stored.name}"'
        thumb = client.get(f"/items/{item['id']}/thumbnail")
        assert thumb.headers["content-type"] == "image/jpeg"
        assert "sandbox" in thumb.headers["content-security-policy"]
        assert client.delete(f"/items/{item['id']}").status_code == 204


def test_upload_extension_comes_from_the_format(db):
    with serve(db) as client:
        r = add(client, image_bytes("purple", "JPEG"), name="holiday.png")
        assert r.status_code == 201, r.text
        assert r.json()["path"].endswith(".jpg")
        r2 = client.get(f"/items/{r.json()['id']}/file")
        assert r2.headers["content-type"] == "image/jpeg"
        assert client.delete(f"/items/{r.json()['id']}").status_code == 204


def test_a_file_that_stopped_being_an_image_is_not_served(db, tmp_path):
    with serve(db) as client:
        r = add(client, image_bytes("orange"), name="o.png")
        item = r.json()
        stored = db / "uploads" / item["path"]
        stored.write_bytes(b"<html><script>alert(1)</script></html>")  # changed behind our back
        r = client.get(f"/items/{item['id']}/file")
        assert r.status_code == 415 and b"<script>" not in r.content
        assert client.delete(f"/items/{item['id']}").status_code == 204


def test_security_headers_on_every_response(db):
    with serve(db, api_key=KEY) as client:
        replies = [
            client.get("/"),
            client.get("/static/app.js"),
            client.get("/healthz"),
            client.get("/search", params={"q": "x"}),  # 401
            client.get("/nowhere"),
            client.get("/healthz", headers={"Host": "evil.example"}),  # 400
            add(client, headers={"Origin": EVIL}),  # 403
        ]
        for r in replies:
            assert r.headers["x-content-type-options"] == "nosniff", r.request.url
            assert r.headers["x-frame-options"] == "DENY"
            assert r.headers["referrer-policy"] == "no-referrer"
            assert "default-src 'none'" in r.headers["content-security-policy"]
        page = replies[0].headers["content-security-policy"]
        assert "script-src 'self'" in page and "frame-ancestors 'none'" in page


# -- the API key -----------------------------------------------------------------------------

OPEN = {("GET", "/"), ("GET", "/healthz"), ("POST", "/login"), ("POST", "/logout"), "/static"}


def wav_bytes() -> bytes:
    """Half a second of a 440 Hz tone as a WAV file."""
    import numpy as np
    import soundfile

    out = io.BytesIO()
    soundfile.write(
        out, 0.3 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16000), 16000, "PCM_16", format="WAV"
    )
    return out.getvalue()


def requests_for() -> dict:
    """A well-formed request for every route, and the status it gets with the key."""
    png = image_bytes("red")
    image = [("file", ("q.png", png, "image/png"))]
    sound = [("file", ("q.wav", wav_bytes(), "audio/wav"))]
    return {
        ("GET", "/search"): (dict(params={"q": "red"}), 200),
        ("POST", "/search"): (dict(data={"text": "red"}), 200),
        ("POST", "/embed/text"): (dict(json={"texts": ["red"]}), 200),
        ("POST", "/embed/image"): (dict(files=image), 200),
        ("POST", "/embed/audio"): (dict(files=sound), 200),
        ("POST", "/similarity"): (dict(data={"text": "red"}, files=image), 200),
        ("POST", "/classify"): (dict(data={"labels": "red, blue"}, files=image), 200),
        ("POST", "/moderate"): (dict(files=image), 200),
        ("POST", "/ask"): (dict(json={"question": "red", "generate": False}), 200),
        ("POST", "/describe"): (dict(data={"generate": "false"}, files=image), 200),
        # The fake model cannot draw: refused with a reason once past the key.
        ("POST", "/generate"): (dict(json={"prompt": "red", "steps": 1, "size": 32}), 422),
        ("GET", "/items/{item_id}"): (dict(), 200),
        ("GET", "/items/{item_id}/file"): (dict(), 200),
        ("GET", "/items/{item_id}/thumbnail"): (dict(), 200),
        ("GET", "/metrics"): (dict(), 200),
        ("GET", "/openapi.json"): (dict(), 200),
        ("GET", "/docs"): (dict(), 200),
        ("GET", "/docs/oauth2-redirect"): (dict(), 200),
        ("GET", "/redoc"): (dict(), 200),
        ("PUT", "/items/{item_id}/metadata"): (dict(json={}), 200),
        ("POST", "/items"): (
            dict(files=[("file", ("n.png", image_bytes("navy"), "image/png"))]),
            201,
        ),
        ("DELETE", "/items/{item_id}"): (dict(), 204),  # last: it removes the item
    }


def routes_of(app) -> set:
    """Every (method, path) of the API (from its OpenAPI schema) and the app's own routes (docs,
    static files), so an endpoint added later cannot be forgotten here."""
    found = {(m.upper(), path) for path, ops in app.openapi()["paths"].items() for m in ops}
    for route in app.routes:
        if isinstance(route, Mount):
            found.add(route.path)
        elif isinstance(route, Route):
            found |= {(m, route.path) for m in route.methods - {"HEAD"}}
    return found | {("GET", "/")}  # the page: not in the schema


def test_with_a_key_every_endpoint_but_the_open_ones_needs_it(db):
    with serve(db, api_key=KEY) as client:
        item = add(client, headers={"X-API-Key": KEY}).json()["id"]
        table = requests_for()
        assert routes_of(client.app) == set(table) | OPEN
        for (method, path), (kwargs, _) in table.items():
            url = path.replace("{item_id}", str(item))
            r = client.request(method, url, **kwargs)
            assert r.status_code == 401, (method, path, r.status_code)
            assert r.headers["www-authenticate"] == "Bearer"
            wrong = client.request(method, url, headers={"X-API-Key": KEY + "x"}, **kwargs)
            assert wrong.status_code == 401, (method, path)
        for (method, path), (kwargs, expected) in table.items():
            url = path.replace("{item_id}", str(item))
            r = client.request(method, url, headers={"X-API-Key": KEY}, **kwargs)
            assert r.status_code == expected, (method, path, r.text)
            if path == "/items":
                client.delete(f"/items/{r.json()['id']}", headers={"X-API-Key": KEY})
        for path in ["/", "/healthz", "/static/app.js", "/static/style.css"]:
            assert client.get(path).status_code == 200, path
        bearer = {"Authorization": f"Bearer {KEY}"}
        assert client.get("/search", params={"q": "red"}, headers=bearer).status_code == 200


def test_metadata_needs_the_key(db):
    with serve(db, api_key=KEY) as client:
        item = first_id(client, headers={"X-API-Key": KEY})
        assert client.put(f"/items/{item}/metadata", json={"x": 1}).status_code == 401
        r = client.put(f"/items/{item}/metadata", json={"x": 1}, headers={"X-API-Key": KEY})
        assert r.status_code == 200 and r.json()["metadata"] == {"x": 1}
        client.put(f"/items/{item}/metadata", json={}, headers={"X-API-Key": KEY})


def test_login_cookie_opens_thumbnails_and_logout_closes_them(db):
    with serve(db, api_key=KEY) as client:
        item = first_id(client, headers={"X-API-Key": KEY})
        thumbnail = f"/items/{item}/thumbnail"
        assert client.get(thumbnail).status_code == 401
        r = client.post("/login", json={"key": "wrong"})
        assert r.status_code == 401 and "set-cookie" not in r.headers
        assert (
            client.post(
                "/login", content=b"{", headers={"content-type": "application/json"}
            ).status_code
            == 422
        )
        assert (
            client.post(
                "/login", content=b"key", headers={"content-type": "text/plain"}
            ).status_code
            == 415
        )
        assert client.post("/login", json={"key": KEY}, headers={"Origin": EVIL}).status_code == 403
        r = client.post("/login", json={"key": KEY})
        assert r.status_code == 204
        cookie = r.headers["set-cookie"]
        for part in ("HttpOnly", "SameSite=strict", "Path=/"):
            assert part.lower() in cookie.lower(), cookie
        assert "secure" not in cookie.lower()  # plain http on loopback
        assert KEY not in cookie and client.cookies.get("xmodal_session")
        r = client.get(thumbnail)
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        assert client.get("/search", params={"q": "red"}).status_code == 200
        assert client.post("/logout").status_code == 204
        assert client.get(thumbnail).status_code == 401
        # a form works too (the page could post one)
        assert client.post("/login", data={"key": KEY}).status_code == 204
        assert client.get(thumbnail).status_code == 200


def test_public_reads_open_reads_but_not_writes(db):
    with serve(db, api_key=KEY, public_reads=True) as client:
        item = first_id(client)
        for path in [f"/items/{item}", f"/items/{item}/file", f"/items/{item}/thumbnail"]:
            assert client.get(path).status_code == 200, path
        assert client.post("/embed/text", json={"texts": ["red"]}).status_code == 200
        assert add(client).status_code == 401
        assert client.put(f"/items/{item}/metadata", json={"x": 1}).status_code == 401
        assert client.delete(f"/items/{item}").status_code == 401
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"X-API-Key": KEY}).status_code == 200


def test_without_a_key_login_is_a_no_op(db):
    with serve(db) as client:
        r = client.post("/login", json={"key": "anything"})
        assert r.status_code == 204 and "set-cookie" not in r.headers


# -- settings ---------------------------------------------------------------------------------


def test_settings_from_env():
    s = ServerSettings.from_env(
        {
            "XMODAL_ALLOWED_HOSTS": "Photos.example, 192.168.1.5,[::1]",
            "XMODAL_CORS_ORIGINS": "https://app.example/, http://localhost:3000",
            "XMODAL_PUBLIC_READS": "1",
            "XMODAL_DEVICE": "cuda:1",
        }
    )
    assert s.allowed_hosts == ("photos.example", "192.168.1.5", "[::1]")
    assert s.cors_origins == ("https://app.example", "http://localhost:3000")
    assert s.public_reads is True and s.device == "cuda:1"
    empty = ServerSettings.from_env({})
    assert (empty.allowed_hosts, empty.cors_origins, empty.public_reads) == ((), (), False)
    for name, bad in [
        ("XMODAL_CORS_ORIGINS", "*"),
        ("XMODAL_CORS_ORIGINS", "app.example"),
        ("XMODAL_CORS_ORIGINS", "https://app.example/path"),
        ("XMODAL_ALLOWED_HOSTS", "photos.example:8000"),
        ("XMODAL_ALLOWED_HOSTS", "http://photos.example"),
        ("XMODAL_PUBLIC_READS", "maybe"),
    ]:
        with pytest.raises(InvalidInputError, match=name):
            ServerSettings.from_env({name: bad})


def test_bind_message_says_what_the_key_protects():
    with pytest.raises(InvalidInputError, match="every endpoint but /healthz"):
        check_bind("0.0.0.0", None)
