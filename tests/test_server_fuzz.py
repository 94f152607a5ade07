"""Schemathesis generates requests from the server's own OpenAPI spec, valid and invalid, for
every operation, against a live server with the real model: none may get a 5xx."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from live_server import live_server
from xmodal.engine.collection import Collection
from xmodal.server import ServerSettings, create_app

pytestmark = pytest.mark.slow


def test_no_server_errors(tmp_path, photos, lite):
    (tmp_path / "photos").mkdir()
    for p in photos[:4]:
        shutil.copy(p.path, tmp_path / "photos" / p.path.name)
    with Collection.open(tmp_path / "db", lite) as collection:
        collection.index([tmp_path / "photos"])
    app = create_app(ServerSettings(db=tmp_path / "db", max_upload_bytes=2**20), encoder=lite)
    cli = Path(sys.executable).with_name("schemathesis")
    with live_server(app) as url:
        run = subprocess.run(
            [
                str(cli),
                "run",
                f"{url}/openapi.json",
                "--checks",
                "not_a_server_error",
                "--max-examples",
                "25",
                "--seed",
                "1",
                "--request-timeout",
                "60",
                "--no-color",
                # A drawing runs for minutes at the sizes a fuzzer picks; its validation is
                # tested in test_server_generate.py.
                "--exclude-path",
                "/generate",
                "--report-dir",
                str(tmp_path / "report"),
            ],
            capture_output=True,
            text=True,
            timeout=900,
            cwd=tmp_path,
        )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    counts = re.search(r"(\d+) generated, (\d+) passed", run.stdout)
    assert counts, run.stdout[-3000:]
    generated, passed = map(int, counts.groups())
    assert generated == passed and generated > 200  # every operation was exercised
