"""WEAT association probes: the statistic against hand and brute-force figures, probe files
good and bad, the shipped probe on the real lite-en model (words and clip art), and the CLI."""

from __future__ import annotations

import json
import math
import shutil
import statistics
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from xmodal.cli import main
from xmodal.errors import InvalidInputError, MissingDataError
from xmodal.evaluate.bias import load_probe, plot_bias, run_probe, weat
from xmodal.models.base import TEXT
from xmodal.models.fake import FakeEncoder

CLIPART = Path("/usr/share/openclipart/png")
needs_clipart = pytest.mark.skipif(
    not CLIPART.is_dir(), reason="needs the Debian package openclipart-png"
)
SANITY = "flowers vs insects / pleasant vs unpleasant"


def unit(degrees: float) -> list[float]:
    return [math.cos(math.radians(degrees)), math.sin(math.radians(degrees))]


# -- the statistic ------------------------------------------------------------------------------


def test_effect_size_and_p_value_by_hand():
    # A = e1, B = e2, so s(w) = w1 - w2: X gives s = 1 and -0.2, Y gives -1 and 0.2.
    x = np.array([[1.0, 0.0], [0.6, 0.8]])
    y = np.array([[0.0, 1.0], [0.8, 0.6]])
    result = weat(x, y, np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]))
    # Mean difference 0.4 - (-0.4) = 0.8; s = (1, -0.2, -1, 0.2) has sample variance 2.08 / 3.
    assert result.effect_size == pytest.approx(0.8 / math.sqrt(2.08 / 3))
    assert result.mean_x == pytest.approx(0.4) and result.mean_y == pytest.approx(-0.4)
    # The 6 partitions give differences 0.8, 0, 1.2, -1.2, 0, -0.8: two reach 0.8.
    assert result.exact and result.partitions == 6
    assert result.p_value == pytest.approx(2 / 6)
    assert (result.n_x, result.n_y, result.n_a, result.n_b) == (2, 2, 1, 1)


def brute_force_weat(x, y, a, b):
    """WEAT from its definition, one cosine at a time, over every re-partition."""

    def cos(u, v):
        return float(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v)))

    def s(w):
        return statistics.fmean(cos(w, v) for v in a) - statistics.fmean(cos(w, v) for v in b)

    scores = [s(w) for w in [*x, *y]]
    n_x = len(x)

    def difference(members):
        inside = [scores[i] for i in members]
        outside = [scores[i] for i in range(len(scores)) if i not in members]
        return statistics.fmean(inside) - statistics.fmean(outside)

    observed = difference(range(n_x))
    effect = observed / statistics.stdev(scores)
    splits = list(combinations(range(len(scores)), n_x))
    p = sum(difference(m) >= observed - 1e-9 for m in splits) / len(splits)
    return effect, p


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_matches_brute_force_over_all_partitions(seed):
    rng = np.random.default_rng(seed)
    x, y, a, b = (rng.normal(size=(n, 8)) for n in (5, 4, 3, 4))
    x += 0.4 * a.mean(axis=0)  # lean X towards A so p is not always near 0.5
    effect, p = brute_force_weat(x, y, a, b)
    result = weat(x, y, a, b)
    assert result.exact and result.partitions == math.comb(9, 5)
    assert result.effect_size == pytest.approx(effect, abs=1e-6)
    assert result.p_value == pytest.approx(p)


def test_random_permutations_estimate_the_exact_p_value():
    rng = np.random.default_rng(7)
    x, y, a, b = (rng.normal(size=(n, 8)) for n in (8, 8, 3, 3))
    x += 0.2 * a.mean(axis=0)
    _, p = brute_force_weat(x, y, a, b)  # over all 12,870 partitions
    sampled = weat(x, y, a, b, permutations=5_000, seed=5, exact_limit=0)
    assert not sampled.exact and sampled.partitions == 5_000
    # The standard error of a p from 5,000 draws is at most 0.007.
    assert sampled.p_value == pytest.approx(p, abs=0.025)
    again = weat(x, y, a, b, permutations=5_000, seed=5, exact_limit=0)
    assert again.p_value == sampled.p_value  # the seed fixes the draws


def test_swapping_the_target_groups_flips_the_effect():
    rng = np.random.default_rng(3)
    x, y, a, b = (rng.normal(size=(n, 6)) for n in (4, 4, 3, 3))
    forward, backward = weat(x, y, a, b), weat(y, x, a, b)
    assert backward.effect_size == pytest.approx(-forward.effect_size)
    # One-sided: the two tails together cover every partition once, ties twice.
    assert forward.p_value + backward.p_value >= 1.0


# -- probe files --------------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "probe.toml"
    path.write_text(text, encoding="utf-8")
    return path


WORDS = """
[[test]]
name = "t1"
targets = { x = ["rose", "tulip"], y = ["ant", "wasp"] }
attributes = { a = ["love", "peace"], b = ["filth", "grief"] }
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name = [unclosed", "not a valid TOML probe file"),
        ('name = "empty"', "no [[test]] tables"),
        (
            WORDS.replace('attributes = { a = ["love", "peace"], b = ["filth", "grief"] }', ""),
            "test 't1': missing key 'attributes'",
        ),
        (
            WORDS.replace('targets = { x = ["rose", "tulip"], y = ["ant", "wasp"] }', ""),
            "test 't1': missing key 'targets'",
        ),
        (
            WORDS.replace(', y = ["ant", "wasp"]', ""),
            "test 't1': targets: expected a table of exactly two groups, got 1 groups",
        ),
        (
            WORDS.replace('b = ["filth", "grief"]', "b = []"),
            "test 't1': attributes.b: give at least 2 non-empty entries, got 0",
        ),
        (WORDS.replace('"tulip"', '"  "'), "test 't1': targets.x: give at least 2"),
        (WORDS.replace('"tulip"', "3"), "test 't1': targets.x: expected a list of strings"),
        (WORDS + 'colour = "red"\n', "test 't1': unknown key(s) colour"),
        (
            WORDS + 'target_images = { x = ["nowhere.png", "b.png"], y = ["c.png", "d.png"] }\n',
            "test 't1': target_images.x: image not found",
        ),
        (
            WORDS + 'target_images = { x = ["none/*.png"], y = ["c.png", "d.png"] }\n',
            "test 't1': target_images.x: no file matches 'none/*.png'",
        ),
        (
            WORDS + 'target_images = { p = ["a.png", "b.png"], q = ["c.png", "d.png"] }\n',
            "test 't1': target_images: groups ['p', 'q'] differ from targets' ['x', 'y']",
        ),
        (WORDS + WORDS, "two tests are named 't1'"),
    ],
)
def test_bad_probe_files_say_what_is_wrong(tmp_path, text, message):
    with pytest.raises(InvalidInputError) as caught:
        load_probe(write(tmp_path, text))
    assert message in str(caught.value)


def test_missing_probe_file(tmp_path):
    with pytest.raises(MissingDataError, match="probe file not found"):
        load_probe(tmp_path / "absent.toml")


@needs_clipart
def test_relative_paths_and_globs_resolve_from_the_probe_folder(tmp_path, monkeypatch):
    for group, names in (("flowers", ("tulips_ganson", "red_flower_01")), ("bugs", ("ant", "bee"))):
        folder = tmp_path / "img" / group
        folder.mkdir(parents=True)
        source = CLIPART / ("plants/flowers" if group == "flowers" else "animals/bugs")
        for name in names:
            shutil.copy(source / f"{name}.png", folder / f"{name}.png")
    text = WORDS + (
        'target_images = { x = ["img/flowers/*.png"], '
        f'y = ["img/bugs/ant.png", "{tmp_path}/img/bugs/bee.png"] }}\n'
    )
    probe_path = write(tmp_path, text)
    monkeypatch.chdir(tmp_path / "img")  # not the probe's folder
    test = load_probe(probe_path).tests[0]
    x, y = test.target_images
    assert [Path(p).name for p in x.items] == ["red_flower_01.png", "tulips_ganson.png"]
    assert [Path(p) for p in y.items] == [
        tmp_path / "img/bugs/ant.png",
        tmp_path / "img/bugs/bee.png",
    ]


def test_optional_images_that_are_missing_drop_the_image_form(tmp_path):
    text = WORDS + (
        "images_optional = true\n"
        'target_images = { x = ["nowhere.png", "b.png"], y = ["c.png", "d.png"] }\n'
    )
    probe = load_probe(write(tmp_path, text))
    results = run_probe(FakeEncoder(16), probe)
    forms = results["tests"][0]["forms"]
    assert "image not found" in forms["image"]["skipped"]
    assert forms["text"]["n_x"] == 2 and forms["text"]["n_a"] == 2


class TextOnlyEncoder(FakeEncoder):
    modalities = frozenset({TEXT})


@needs_clipart
def test_image_form_is_skipped_on_a_model_without_images():
    results = run_probe(TextOnlyEncoder(16), load_probe("default"), permutations=100)
    sanity = next(t for t in results["tests"] if t["name"] == SANITY)
    assert sanity["forms"]["image"] == {"skipped": "fake:16 does not embed images"}
    assert "effect_size" in sanity["forms"]["text"]
    json.dumps(results)  # JSON-able as it is


def test_default_probe_ships_the_classic_tests():
    probe = load_probe("default")
    names = [t.name for t in probe.tests]
    assert names[0] == SANITY and len(names) == 4
    for test in probe.tests:
        assert all(8 <= len(g.items) <= 16 for g in (*test.targets, *test.attributes))
    if CLIPART.is_dir():  # every shipped drawing exists where the probe says
        assert all(len(g.items) == 8 for g in probe.tests[0].target_images)


# -- the real lite-en model ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def lite_en_results():
    from xmodal.models import load_model

    return run_probe(load_model("lite-en"), load_probe("default"))


def sanity_forms(results):
    return next(t for t in results["tests"] if t["name"] == SANITY)["forms"]


@pytest.mark.slow
def test_lite_en_finds_flowers_pleasant_and_insects_unpleasant(lite_en_results):
    text = sanity_forms(lite_en_results)["text"]
    # Measured: d = +1.36, exact p = 0.0018 over the 12,870 partitions of 8 + 8 words.
    assert text["effect_size"] > 0.8 and text["p_value"] < 0.05
    assert text["exact"] and text["partitions"] == 12_870
    assert text["mean_association"]["flowers"] > text["mean_association"]["insects"]


@needs_clipart
@pytest.mark.slow
def test_lite_en_finds_it_on_clip_art_too(lite_en_results):
    image = sanity_forms(lite_en_results)["image"]
    # Measured: d = +1.44, p = 0.0002 on 8 flower and 8 insect drawings.
    assert image["effect_size"] > 0.8 and image["p_value"] < 0.05
    assert (image["n_x"], image["n_y"], image["n_a"], image["n_b"]) == (8, 8, 12, 12)


def test_plot_is_a_real_png(tmp_path):
    pytest.importorskip("matplotlib")
    probe = load_probe(write(tmp_path, WORDS))
    results = {name: run_probe(FakeEncoder(dim), probe) for name, dim in (("a", 16), ("b", 8))}
    path = plot_bias(results, tmp_path / "plot" / "bias.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 300
        image.verify()


# -- the CLI ------------------------------------------------------------------------------------


def run(*args):
    return CliRunner().invoke(main, ["eval", *map(str, args)], catch_exceptions=False)


@pytest.mark.slow
def test_cli_default_probe_report_and_table(tmp_path):
    report = tmp_path / "report"
    result = run("--bias", "default", "--model", "lite-en", "--report", report)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[2].split() == ["TEST", "FORM", "lite-en"]
    sanity = next(line for line in lines if line.startswith(SANITY) and " text " in line)
    assert "d=+1.36 (p=0.002)" in sanity
    document = json.loads((report / "bias.json").read_text(encoding="utf-8"))
    assert document["probe"]["name"] == "default"
    assert document["models"]["lite-en"]["tests"][0]["forms"]["text"]["exact"] is True
    with Image.open(report / "bias.png") as image:
        assert image.format == "PNG"
        image.verify()


def test_cli_json_on_a_probe_file(tmp_path):
    result = run("--bias", write(tmp_path, WORDS), "-m", "fake:16", "--json", "--seed", "3")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    form = document["models"]["fake:16"]["tests"][0]["forms"]["text"]
    assert form["exact"] and form["partitions"] == 6
    assert document["models"]["fake:16"]["seed"] == 3


def test_cli_needs_pairs_or_a_probe(tmp_path):
    result = run()
    assert result.exit_code == 2 and "give PAIRS (an image-caption set) or --bias" in result.stderr
    result = run(tmp_path, "--bias", "default")
    assert result.exit_code == 2 and "not both" in result.stderr


def test_cli_bad_probe_is_one_line_error(tmp_path):
    result = run("--bias", write(tmp_path, "name = [unclosed"), "-m", "fake:16")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "not a valid TOML probe file" in result.stderr
