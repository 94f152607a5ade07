"""`xmodal serve` flags reach the running server: a real process on a free port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

START_TIMEOUT_S = 120  # a bound on start-up, not a speed check


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def serve(tmp_path):
    """Start `xmodal serve ARGS` (fake model) and yield its base URL; stopped afterwards."""
    procs = []

    def start(*args: str, **env: str) -> str:
        port = _free_port()
        log = tmp_path / f"serve-{port}.log"  # a file, not a pipe nobody drains
        command = ["serve", "--db", str(tmp_path / "db"), "-m", "fake", "--port", str(port)]
        with open(log, "w") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "xmodal", *command, *args],
                stdout=subprocess.DEVNULL,
                stderr=err,
                env={**os.environ, **env},
            )
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"serve exited {proc.returncode}: {log.read_text()}")
            try:
                httpx.get(f"{url}/healthz", timeout=2)
                return url
            except httpx.TransportError:
                time.sleep(0.2)
        raise AssertionError("the server did not start")

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=30)


def test_allowed_host_and_cors_origin_flags(serve):
    url = serve(
        "--allowed-host", "photos.example", "--allowed-host", "gallery.example",
        "--cors-origin", "https://app.example", "--device", "auto",
    )  # fmt: skip
    for host in ("photos.example", "gallery.example:8443", "localhost"):
        assert httpx.get(f"{url}/healthz", headers={"Host": host}).status_code == 200, host
    refused = httpx.get(f"{url}/healthz", headers={"Host": "evil.example"})
    assert refused.status_code == 400 and "--allowed-host" in refused.text
    preflight = httpx.options(
        f"{url}/search",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.headers.get("access-control-allow-origin") == "https://app.example"
    other = httpx.post(f"{url}/search", headers={"Origin": "https://evil.example"}, data={})
    assert other.status_code == 403


def test_public_reads_flag_opens_reads_only(serve):
    url = serve("--public-reads", XMODAL_API_KEY="s3cret")
    assert httpx.get(f"{url}/search", params={"q": "a cat"}).status_code == 200
    # Writes still need the key.
    upload = httpx.post(f"{url}/items", files={"file": ("a.png", b"x", "image/png")})
    assert upload.status_code == 401


def test_without_public_reads_the_key_guards_reads(serve):
    url = serve(XMODAL_API_KEY="s3cret")
    assert httpx.get(f"{url}/search", params={"q": "a cat"}).status_code == 401


@pytest.mark.parametrize(
    ("flag", "says"),
    [("--cors-origin=*", "not an origin"), ("--allowed-host=https://x.example/", "host name")],
)
def test_bad_flags_are_one_line_errors(flag, says, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "xmodal", "serve", "--db", str(tmp_path / "db"), flag],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and says in result.stderr
    assert "Traceback" not in result.stderr
