"""Moderation on real clip-art (openclipart-png) with the real lite model and open_nsfw."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from xmodal.cli.common import ErrorGroup
from xmodal.cli.moderate import moderate_cmd
from xmodal.errors import InvalidInputError, MissingDataError
from xmodal.images import load_image
from xmodal.moderation import Moderator, load_policy, parse_policy
from xmodal.moderation.evaluation import evaluate_policy
from xmodal.moderation.nsfw import NsfwScorer
from xmodal.samples import MODERATION_WEAPONS as WEAPONS
from xmodal.samples import moderation_samples


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    """weapons/, alcohol/, drugs/ and safe/ (animals, vegetables, plants) as symlinks."""
    return moderation_samples(tmp_path_factory.mktemp("labelled"))


@pytest.fixture(scope="module")
def moderator(lite):
    return Moderator(lite)


def _write(tmp_path: Path, text: str, name: str = "policy.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- policy files --------------------------------------------------------------------------


def test_default_policy_has_the_usual_categories():
    policy = load_policy()
    for name in ("sexual", "violence", "weapons", "drugs", "hate", "self_harm"):
        assert policy.category(name).prompts
    assert all(0 <= c.threshold <= 1 for c in policy.categories)
    assert policy.neutral_prompts


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[categories.weapons]\nthreshold = 0.5\n", "missing prompts"),
        ('[categories.weapons]\nprompts = ["a gun"]\nthreshold = 1.5\n', "must be in [0, 1]"),
        ('[categories.weapons]\nprompts = ["a gun"]\ncolour = "red"\n', "unknown key(s) colour"),
        ("[categories.weapons]\nprompts = []\n", "prompts is empty"),
        ('[categories.weapons]\nprompts = "a gun"\n', "must be a list"),
        ('[neutral]\nprompts = ["a cat"]\n', "no [categories.NAME]"),
        ("[categories.weapons\n", "not a valid TOML"),
        ('nsfw_threshold = "high"\n[categories.w]\nprompts = ["a gun"]\n', "nsfw_threshold"),
    ],
)
def test_bad_category_files_name_the_problem(tmp_path, text, problem):
    with pytest.raises(InvalidInputError) as e:
        load_policy(_write(tmp_path, text))
    assert problem in str(e.value)
    assert "policy.toml" in str(e.value) or "category file" in str(e.value)


def test_yaml_category_file(tmp_path):
    pytest.importorskip("yaml")
    path = _write(tmp_path, "categories:\n  weapons:\n    prompts: [a gun]\n", "p.yaml")
    assert load_policy(path).category("weapons").prompts == ("a gun",)


def test_missing_category_file(tmp_path):
    with pytest.raises(MissingDataError):
        load_policy(tmp_path / "nope.toml")


def test_fingerprint_follows_thresholds_prompts_and_model():
    base = {"categories": {"weapons": {"prompts": ["a gun"], "threshold": 0.5}}}
    same = parse_policy(base).fingerprint("lite")
    assert same == parse_policy(base).fingerprint("lite")
    higher = {"categories": {"weapons": {"prompts": ["a gun"], "threshold": 0.6}}}
    other = {"categories": {"weapons": {"prompts": ["a rifle"], "threshold": 0.5}}}
    assert parse_policy(higher).fingerprint("lite") != same
    assert parse_policy(other).fingerprint("lite") != same
    assert parse_policy(base).fingerprint("openclip:ViT-B-32") != same


# -- open_nsfw -----------------------------------------------------------------------------


def test_nsfw_scores_everyday_clipart_low(labelled):
    scorer = NsfwScorer()
    images = [load_image(p, min_side=256) for p in sorted((labelled / "safe").iterdir())[:12]]
    scores = scorer.score(images)
    assert scores.shape == (12,) and scores.dtype == np.float32
    assert float(scores.max()) < 0.3
    assert scorer.score([]).shape == (0,)
    with pytest.raises(InvalidInputError):
        scorer.score(["not an image"])


# -- verdicts ------------------------------------------------------------------------------


@pytest.mark.slow
def test_weapons_flagged_and_everyday_things_safe(moderator, labelled):
    weapons = sorted((labelled / "weapons").iterdir())
    safe = sorted((labelled / "safe").iterdir())
    start = time.perf_counter()
    verdicts = moderator.moderate(weapons + safe)
    rate = len(verdicts) / (time.perf_counter() - start)
    print(f"\nmoderation (lite + open_nsfw): {rate:.1f} images/s")
    on_weapons = verdicts[: len(weapons)]
    on_safe = verdicts[len(weapons) :]
    hit = sum("weapons" in v.flagged for v in on_weapons) / len(weapons)
    clean = sum(v.safe for v in on_safe) / len(safe)
    # Chance: weapons are a quarter of these images; the default threshold catches most.
    assert hit >= 0.6, [v.top() for v in on_weapons]
    assert clean >= 0.8
    assert all("nsfw" in v.scores and 0 <= v.scores["weapons"] <= 1 for v in verdicts)


def test_judging_stored_vectors_alone(moderator, labelled, lite):
    gun = labelled / "weapons" / "m16_02.png"
    vector = lite.embed_images([gun])[0]
    alone = moderator.verdict(vector)
    assert "weapons" in alone.flagged and "nsfw" not in alone.scores
    assert moderator.judge(vector[None, :], [load_image(gun)])[0].scores["nsfw"] < 0.5
    with pytest.raises(InvalidInputError):
        moderator.scores_from_vectors(np.zeros((1, 5), np.float32))


def test_fingerprint_names_the_model_and_nsfw(lite):
    policy = load_policy()
    with_nsfw = Moderator(lite, policy).fingerprint
    assert with_nsfw != Moderator(lite, policy, nsfw=False).fingerprint
    assert with_nsfw == policy.fingerprint("lite+open_nsfw")


# -- evaluation and the command ------------------------------------------------------------


def _cli():
    group = ErrorGroup("xmodal")
    group.add_command(moderate_cmd)
    return group


@pytest.mark.slow
def test_evaluation_reports_precision_and_recall(moderator, labelled):
    report = evaluate_policy(moderator, labelled)
    rows = {c.name: c for c in report.categories}
    assert set(rows) == {"weapons", "alcohol", "drugs"}
    assert rows["weapons"].support == len(WEAPONS)
    assert rows["weapons"].precision >= 0.6 and rows["weapons"].recall >= 0.6
    assert rows["weapons"].suggested_f1 >= rows["weapons"].f1
    assert report.safe_images == len(list((labelled / "safe").iterdir()))
    assert report.safe_flagged <= 0.2 * report.safe_images
    print("\n" + report.table())


def test_eval_refuses_a_folder_that_is_no_category(moderator, tmp_path):
    (tmp_path / "weapon").mkdir()
    with pytest.raises(InvalidInputError, match="not a category"):
        evaluate_policy(moderator, tmp_path)


@pytest.mark.slow
def test_cli_eval_prints_the_table(labelled):
    result = CliRunner().invoke(_cli(), ["moderate", "--eval", str(labelled)])
    assert result.exit_code == 0, result.output
    assert "PRECISION" in result.output and "RECALL" in result.output
    line = next(row for row in result.output.splitlines() if row.startswith("weapons"))
    assert line.split()[1] == str(len(WEAPONS))
    as_json = CliRunner().invoke(_cli(), ["moderate", "--eval", str(labelled), "--json"])
    record = json.loads(as_json.output)
    assert {c["name"] for c in record["categories"]} == {"weapons", "alcohol", "drugs"}


def test_cli_verdicts_skip_unreadable_files(labelled, tmp_path):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    gun = labelled / "weapons" / "m16_02.png"
    result = CliRunner().invoke(_cli(), ["moderate", "--json", str(gun), str(junk)])
    assert result.exit_code == 0, result.output
    assert f"skipping {junk}" in result.output
    record = json.loads(next(r for r in result.output.splitlines() if r.startswith("{")))
    assert record["safe"] is False and "weapons" in record["flagged"]
    plain = CliRunner().invoke(_cli(), ["moderate", str(gun)])
    assert "UNSAFE (weapons)" in plain.output
    only_junk = CliRunner().invoke(_cli(), ["moderate", str(junk)])
    assert only_junk.exit_code == 1


def test_cli_bad_category_file_is_a_clear_error(tmp_path):
    bad = _write(tmp_path, '[categories.weapons]\nprompts = ["a gun"]\nthreshold = 2\n')
    result = CliRunner().invoke(_cli(), ["moderate", "--categories", str(bad), "x.png"])
    assert result.exit_code == 1
    assert "error:" in result.output and "threshold must be in [0, 1]" in result.output
    assert "Traceback" not in result.output
