"""`xmodal index`, `search` and `dedup` on real photos, as a user runs them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from xmodal.cli import main
from xmodal.engine.collection import INDEX_FILE
from xmodal.index import load_index


@pytest.fixture
def library(tmp_path, photos):
    folder = tmp_path / "library"
    folder.mkdir()
    for p in photos:
        shutil.copy(p.path, folder / p.path.name)
    return folder


def run(*args):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result


def test_index_reports_and_reindex_embeds_nothing(library, tmp_path):
    (library / "broken.jpg").write_bytes(b"\xff\xd8\xff truncated")
    db = str(tmp_path / "db")
    first = run("index", str(library), "--db", db, "-m", "fake")
    assert first.exit_code == 0
    assert "added 14," in first.stdout and "skipped 1;" in first.stdout
    assert "skipping" in first.stderr and "broken.jpg" in first.stderr
    again = run("index", "--db", db)
    assert "added 0, updated 0, moved 0, removed 0, unchanged 14" in again.stdout


def test_index_kind_with_parameters(library, tmp_path):
    db = str(tmp_path / "db")
    built = run("index", str(library), "--db", db, "-m", "fake", "--index", "ivf:nlist=4,nprobe=2")
    assert built.exit_code == 0, built.stderr
    saved = load_index(Path(db) / INDEX_FILE)
    assert (saved.kind, saved.params["nlist"], saved.params["nprobe"]) == ("ivf", 4, 2)
    bad = run("index", str(library), "--db", db, "--index", "ivf:nlists=4")
    assert bad.exit_code == 2 and "takes no parameter nlists" in bad.stderr


def test_search_json_batch_and_errors(library, tmp_path):
    db = str(tmp_path / "db")
    run("index", str(library), "--db", db, "-m", "fake")
    one = json.loads(run("search", "a cat", "--db", db, "-k", "3", "--json").stdout)
    assert one["query"] == "a cat" and len(one["results"]) == 3
    scores = [r["score"] for r in one["results"]]
    assert scores == sorted(scores, reverse=True)

    everything = json.loads(run("search", "a cat", "--db", db, "-k", "100", "--json").stdout)
    assert len(everything["results"]) == 14

    queries = tmp_path / "q.txt"
    queries.write_text("a cat\n\nएक घोड़ा\nred car\n", encoding="utf-8")
    lines = run("search", "--queries", str(queries), "--db", db, "-k", "2").stdout.splitlines()
    assert [json.loads(line)["query"] for line in lines] == ["a cat", "एक घोड़ा", "red car"]

    assert run("search", "--db", db).exit_code == 2  # no query at all: usage error
    missing = run("search", "x", "--db", str(tmp_path / "nowhere"))
    assert missing.exit_code == 1 and "xmodal index" in missing.stderr


def test_image_query_finds_itself_first(library, tmp_path):
    db = str(tmp_path / "db")
    run("index", str(library), "--db", db, "-m", "fake")
    query = library / "coffee.png"
    out = json.loads(run("search", "--image", str(query), "--db", db, "--json").stdout)
    assert out["results"][0]["path"] == str(query)
    assert out["results"][0]["score"] == pytest.approx(1.0, abs=1e-5)


def test_where_filters_on_metadata(library, tmp_path):
    from xmodal.engine.collection import Collection

    db = tmp_path / "db"
    run("index", str(library), "--db", str(db), "-m", "fake")
    with Collection.open(db) as c:
        hits = c.search_text("x", k=100)
        c.set_metadata(hits[0].id, {"album": "trip", "year": 2024})
        c.set_metadata(hits[1].id, {"album": "trip", "year": 2023})
    out = run("search", "x", "--db", str(db), "--where", "album=trip", "--json")
    assert [r["id"] for r in json.loads(out.stdout)["results"]] == [hits[0].id, hits[1].id]
    out = run("search", "x", "--db", str(db), "--where", "album=trip", "--where", "year=2023")
    assert out.stdout.count(".png") == 1
    assert run("search", "x", "--db", str(db), "--where", "album").exit_code == 1


def test_dedup_groups_a_resized_copy(library, tmp_path):
    Image.open(library / "chelsea.png").resize((300, 200)).save(library / "chelsea-small.jpg")
    db = str(tmp_path / "db")
    run("index", str(library), "--db", db, "-m", "fake")
    lines = run("dedup", "--db", db, "--threshold", "0.97", "--json").stdout.splitlines()
    groups = [json.loads(line) for line in lines]
    chelsea = [g for g in groups if g["first"].endswith("chelsea.png")]
    assert chelsea and [m["path"] for m in chelsea[0]["members"]] == [
        str(library / "chelsea-small.jpg")
    ]


@pytest.mark.slow
def test_readme_main_job_finds_the_cat(tmp_path):
    """The README's main command: index real photos with lite, "a cat" -> chelsea at rank 1."""
    demo = subprocess.run(
        [sys.executable, "-m", "xmodal", "demo", "--dir", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert demo.returncode == 0, demo.stderr
    assert "14 added" in demo.stdout
    search = subprocess.run(
        [
            sys.executable,
            "-m",
            "xmodal",
            "search",
            "a cat",
            "--db",
            str(tmp_path / "demo" / "db"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert json.loads(search.stdout)["results"][0]["path"].endswith("chelsea.png")
