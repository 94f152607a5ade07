"""`xmodal eval`: the table, --json, --report with its plots, several models, and bad input."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from PIL import Image

from xmodal.cli import main

PLOTS = ("recall_at_k.png", "similarity_histograms.png", "embedding_map.png")


def run(*args):
    return CliRunner().invoke(main, ["eval", *map(str, args)], catch_exceptions=False)


@pytest.fixture
def pairs_csv(tmp_path, photos):
    rows = ["image,caption"]
    for p in photos:
        rows += [f"{p.path},a photo of a {p.label}", f"{p.path},{p.label}"]
    rows += ["missing.png,a lost photo", f"{photos[0].path},   "]
    csv = tmp_path / "pairs.csv"
    csv.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return csv


def assert_real_pngs(folder):
    for name in PLOTS:
        path = folder / name
        assert path.stat().st_size > 0
        with Image.open(path) as image:
            assert image.format == "PNG"
            assert image.width > 100 and image.height > 100
            image.verify()


def test_table_counts_and_warns_about_skipped_rows(pairs_csv):
    result = run(pairs_csv, "-m", "fake:32")
    assert result.exit_code == 0, result.stderr
    assert "pairs.csv:30: image file not found" in result.stderr
    assert "pairs.csv:31: empty caption" in result.stderr
    out = result.stdout
    assert "(csv): 28 pairs, 14 images, 28 captions, 2 skipped" in out
    assert "fake:32" in out.splitlines()[2]
    for row in ("text→image recall@1", "image→text recall@10", "uniformity image", "cosine gap"):
        assert row in out
    assert "zero-shot" not in out  # captioned set: no classes


def test_json_is_the_metrics(pairs_csv):
    result = run(pairs_csv, "-m", "fake:32", "--json")
    document = json.loads(result.stdout)
    assert document["dataset"]["kind"] == "csv" and document["dataset"]["skipped"] == 2
    metrics = document["models"]["fake:32"]
    assert metrics["retrieval"]["n_texts"] == 28 and metrics["retrieval"]["n_images"] == 14
    assert set(metrics["quality"]["suggested_threshold"]) >= {"threshold", "precision", "recall"}


def test_report_with_two_models_side_by_side(pairs_csv, tmp_path):
    report = tmp_path / "report"
    result = run(pairs_csv, "-m", "fake:32", "-m", "fake:16", "-m", "fake:32", "--report", report)
    assert result.exit_code == 0, result.stderr
    header = result.stdout.splitlines()[2].split()
    assert header == ["METRIC", "fake:32", "fake:16"]
    metrics = json.loads((report / "metrics.json").read_text(encoding="utf-8"))
    assert list(metrics["models"]) == ["fake:32", "fake:16"]
    assert_real_pngs(report)


def test_unreadable_image_is_skipped_with_its_pairs(pairs_csv, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pairs_csv.open("a", encoding="utf-8") as f:
        f.write(f"{broken},a broken picture\n")
    result = run(pairs_csv, "-m", "fake:32", "--json")
    assert result.exit_code == 0, result.stderr
    assert "skipping broken.png: " in result.stderr
    counts = json.loads(result.stdout)["models"]["fake:32"]["counts"]
    assert counts == {"pairs": 28, "images": 14, "texts": 28, "unreadable_images": 1}


def test_bad_input_is_one_line_and_exit_1(tmp_path):
    csv = tmp_path / "bad.csv"
    csv.write_text("file,words\na.png,a cat\n", encoding="utf-8")
    result = run(csv, "-m", "fake")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ")
    assert "caption column (caption, text, title)" in result.stderr
    missing = run(tmp_path / "nope.jsonl", "-m", "fake")
    assert missing.exit_code == 1 and "no such file or folder" in missing.stderr


def test_bad_template_is_an_error(photo_tree):
    result = run(photo_tree, "-m", "fake", "-t", "no placeholder")
    assert result.exit_code == 1 and "must contain '{}'" in result.stderr


@pytest.mark.slow
def test_lite_en_report_on_a_label_tree(photo_tree, tmp_path, one_torch_thread):
    report = tmp_path / "report"
    result = run(photo_tree, "--model", "lite-en", "--report", report)
    assert result.exit_code == 0, result.stderr
    assert "(labels): 14 pairs, 14 images, 14 captions, 0 skipped" in result.stdout
    top1 = next(line for line in result.stdout.splitlines() if line.startswith("zero-shot top-1"))
    assert float(top1.split()[-1].rstrip("%")) >= 70
    metrics = json.loads((report / "metrics.json").read_text(encoding="utf-8"))
    zero_shot = metrics["models"]["lite-en"]["zero_shot"]
    assert zero_shot["n_classes"] == 14 and zero_shot["per_class_recall"]["cat"] == 1.0
    assert_real_pngs(report)
