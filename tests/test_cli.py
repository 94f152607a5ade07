"""The `xmodal` command line, run as a user runs it (a subprocess) and in-process for speed."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from xmodal.cli import main


def run_xmodal(*args: str, env_model: str | None = None) -> subprocess.CompletedProcess:
    import os

    env = dict(os.environ)
    if env_model:
        env["XMODAL_MODEL"] = env_model
    return subprocess.run(
        [sys.executable, "-m", "xmodal", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


@pytest.fixture
def cli():
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(main, list(args), catch_exceptions=False)

    return invoke


@pytest.mark.slow
def test_classify_chelsea_is_a_cat(photo_by_name):
    """The issue's first must-show, through the installed entry point and the default model."""
    chelsea = str(photo_by_name["chelsea"].path)
    labels = "cat, dog, car, airplane, flower, person"
    table = run_xmodal("classify", chelsea, "--labels", labels)
    assert table.returncode == 0, table.stderr
    first_row = table.stdout.splitlines()[1].split()
    assert first_row[:2] == [chelsea, "cat"]

    as_json = run_xmodal("classify", chelsea, "--labels", labels, "--json")
    record = json.loads(as_json.stdout)
    assert record["path"] == chelsea
    assert record["labels"][0]["label"] == "cat"
    scores = [x["score"] for x in record["labels"]]
    assert scores == sorted(scores, reverse=True) and len(scores) == 6
    assert sum(scores) == pytest.approx(1.0, abs=1e-3)


def test_non_image_exits_non_zero_with_one_line(tmp_path):
    notes = tmp_path / "notes.jpg"
    notes.write_text("this is text, not a JPEG")
    result = run_xmodal("classify", str(notes), "--labels", "cat,dog", env_model="fake")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(notes) in lines[0]


def test_bad_file_among_good_ones_still_classifies_the_rest(cli, tmp_path, photos):
    bad = tmp_path / "empty.png"
    bad.write_bytes(b"")
    result = cli("classify", str(photos[0].path), str(bad), "-l", "cat,dog", "--json", "-m", "fake")
    assert result.exit_code == 1
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [r["path"] for r in records] == [str(photos[0].path)]
    assert str(bad) in result.stderr


def test_one_label_is_a_usage_error(cli, photos):
    result = cli("classify", str(photos[0].path), "--labels", "cat", "-m", "fake")
    assert result.exit_code == 1
    assert "at least two distinct labels" in result.stderr


def test_unknown_model_is_one_line():
    result = run_xmodal("embed", "text", "hello", "--model", "no-such-model")
    assert result.returncode == 1
    assert result.stderr.startswith("error: unknown model 'no-such-model'")
    assert "Traceback" not in result.stderr


def test_embed_text_json_and_npy(cli, tmp_path):
    result = cli("embed", "text", "a cat", "एक बिल्ली", "-m", "fake:16")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["text"] for r in rows] == ["a cat", "एक बिल्ली"]
    assert all(len(r["embedding"]) == 16 for r in rows)

    out = tmp_path / "t.npy"
    cli("embed", "text", "a cat", "एक बिल्ली", "-m", "fake:16", "-o", str(out))
    matrix = np.load(out)
    assert matrix.shape == (2, 16) and matrix.dtype == np.float32
    np.testing.assert_allclose(matrix[0], rows[0]["embedding"], atol=1e-6)


def test_embed_image_npy_keeps_the_row_to_path_mapping(cli, tmp_path, photos):
    # A corrupt file in the middle of real photos: the matrix skips it, the paths file says
    # which photo each row is and why the corrupt one is missing.
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(photos[0].path.read_bytes()[:200])
    missing = tmp_path / "missing.png"
    good = [str(p.path) for p in photos[:4]]
    args = [good[0], good[1], str(corrupt), good[2], str(missing), good[3]]
    out = tmp_path / "vectors.npy"
    result = cli("embed", "image", *args, "-m", "fake", "-o", str(out))
    assert result.exit_code == 1
    assert f"skipping {corrupt}" in result.stderr and f"skipping {missing}" in result.stderr
    paths_file = tmp_path / "vectors.paths.json"
    assert str(paths_file) in result.stderr
    record = json.loads(paths_file.read_text(encoding="utf-8"))
    assert record["matrix"] == "vectors.npy"
    assert record["rows"] == good
    assert [s["path"] for s in record["skipped"]] == [str(corrupt), str(missing)]
    assert all(s["reason"] for s in record["skipped"])
    matrix = np.load(out)
    assert matrix.shape == (4, 32)
    # Row i is the vector of rows[i], embedded alone.
    from xmodal.models import load_model

    np.testing.assert_allclose(matrix, load_model("fake").embed_images(good), atol=1e-6)


def test_embed_image_npy_without_suffix_and_all_bad(cli, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    result = cli("embed", "image", str(bad), "-m", "fake:8", "-o", str(tmp_path / "vecs"))
    assert result.exit_code == 1
    assert np.load(tmp_path / "vecs.npy").shape == (0, 8)
    record = json.loads((tmp_path / "vecs.paths.json").read_text(encoding="utf-8"))
    assert record["rows"] == [] and record["skipped"][0]["path"] == str(bad)


def test_similarity_json(cli, photos):
    result = cli(
        "similarity", "--text", "a cat", "--image", str(photos[0].path), "--json", "-m", "fake"
    )
    record = json.loads(result.stdout)
    assert -1.0 <= record["cosine"] <= 1.0
    assert record["score"] == pytest.approx(record["cosine"] * 10.0, abs=1e-3)


def test_models_lists_lite(cli):
    result = cli("models", "--json")
    names = [json.loads(line)["name"] for line in result.stdout.splitlines()]
    assert "lite" in names


@pytest.mark.slow
def test_similarity_prefers_the_right_text(photo_by_name):
    chelsea = str(photo_by_name["chelsea"].path)
    cat = json.loads(run_xmodal("similarity", "-t", "a cat", "-i", chelsea, "--json").stdout)
    rocket = json.loads(run_xmodal("similarity", "-t", "a rocket", "-i", chelsea, "--json").stdout)
    assert cat["cosine"] > rocket["cosine"]
