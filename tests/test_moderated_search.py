"""`xmodal index --moderate`: stored verdicts hide flagged items from searches until asked for."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from xmodal.cli import main
from xmodal.samples import OPENCLIPART_ROOT

WEAPONS = ["9_mm_gun_01.png", "ak47_01.png", "m16_01.png", "blue_gun_alex_fernandez_01.png"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def drawings(tmp_path):
    weapons = OPENCLIPART_ROOT / "tools" / "weapons"
    if not weapons.is_dir():
        from xmodal.errors import MissingDataError

        raise MissingDataError(f"{weapons} not found: install the Debian package openclipart-png")
    folder = tmp_path / "drawings"
    folder.mkdir()
    for name in WEAPONS:
        shutil.copy(weapons / name, folder / name)
    animals = sorted((OPENCLIPART_ROOT / "animals").glob("*.png"))[:6]
    for path in animals:
        shutil.copy(path, folder / path.name)
    return folder


def paths(result) -> list[str]:
    assert result.exit_code == 0, result.output
    return [Path(r["path"]).name for r in json.loads(result.stdout)["results"]]


@pytest.mark.slow
def test_flagged_items_are_hidden_until_asked_for(drawings, tmp_path):
    db = tmp_path / "db"
    indexed = run("index", drawings, "--db", db, "--moderate")
    assert indexed.exit_code == 0, indexed.output
    assert "judged 10 image(s)" in indexed.stdout
    everything = paths(run("search", "a gun", "--db", db, "-k", 20, "--json", "--include-flagged"))
    assert set(WEAPONS) <= set(everything)
    shown = paths(run("search", "a gun", "--db", db, "-k", 20, "--json"))
    hidden = set(everything) - set(shown)
    assert hidden == set(WEAPONS)  # every gun drawing is flagged; no animal is
    # Judged once: a second run judges nothing; another category file judges everything again.
    assert "judged 0 image(s)" in run("index", drawings, "--db", db, "--moderate").stdout
    strict = tmp_path / "strict.toml"
    strict.write_text(
        '[categories.animals]\nprompts = ["a drawing of an animal", "a wild animal"]\n'
        "threshold = 0.3\n",
        encoding="utf-8",
    )
    again = run("index", drawings, "--db", db, "--moderate", "--categories", strict)
    assert "judged 10 image(s)" in again.stdout
    assert len(paths(run("search", "a gun", "--db", db, "-k", 20, "--json"))) < 10


def test_categories_needs_moderate(drawings, tmp_path):
    strict = tmp_path / "c.toml"
    strict.write_text("", encoding="utf-8")
    result = CliRunner().invoke(main, ["index", str(drawings), "--categories", str(strict)])
    assert result.exit_code == 2 and "--moderate" in result.output
