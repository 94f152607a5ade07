"""Sounds in a collection beside images: indexed incrementally, searched by text, image or sound,
filtered by type; through the Python API and the CLI. Real recordings (Debian packages)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from xmodal.cli import main
from xmodal.engine.collection import Collection

ASTERISK = Path("/usr/share/asterisk/sounds/en")
FREEDESKTOP = Path("/usr/share/sounds/freedesktop/stereo")

needs_sounds = pytest.mark.skipif(
    not (ASTERISK.is_dir() and FREEDESKTOP.is_dir()),
    reason="needs Debian asterisk-core-sounds-en-wav and sound-theme-freedesktop (.ci/run)",
)
pytestmark = needs_sounds


@pytest.fixture
def mixed(tmp_path, photo_by_name):
    """A folder of two photos, two voice prompts (WAV), one bell (OGG) and a broken 'WAV'."""
    root = tmp_path / "media"
    root.mkdir()
    for name in ("chelsea", "rocket"):
        shutil.copy(photo_by_name[name].path, root / f"{name}.png")
    shutil.copy(ASTERISK / "vm-goodbye.wav", root / "goodbye.wav")
    shutil.copy(ASTERISK / "queue-thankyou.wav", root / "thanks.wav")
    shutil.copy(FREEDESKTOP / "bell.oga", root / "bell.oga")
    (root / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt nothing here")
    return root


def test_a_mixed_folder_is_indexed_incrementally(tmp_path, mixed):
    db = tmp_path / "db"
    with Collection.open(db, "fake") as collection:
        report = collection.index([mixed])
        assert report.added == 5, report
        assert [Path(p).name for p, _ in report.skipped] == ["broken.wav"]
        kinds = {Path(collection.get(i).path).name: collection.get(i).kind for i in range(1, 6)}
        assert kinds == {
            "bell.oga": "audio",
            "chelsea.png": "image",
            "goodbye.wav": "audio",
            "rocket.png": "image",
            "thanks.wav": "audio",
        }
        bell = collection._catalog.item_at(os.fsencode(mixed / "bell.oga"))
        assert 0.1 < bell.duration < 5
        # Nothing changed: nothing embedded, and the broken file is not retried.
        again = collection.index([mixed])
        assert (again.added, again.embedded, again.unchanged) == (0, 0, 5)
        # A moved sound keeps its vector; a removed one leaves.
        before = collection.vector(bell.id)
        (mixed / "bell.oga").rename(mixed / "ring.oga")
        (mixed / "thanks.wav").unlink()
        moved = collection.index([mixed])
        assert (moved.moved, moved.removed, moved.embedded) == (1, 1, 0)
        ring = collection._catalog.item_at(os.fsencode(mixed / "ring.oga"))
        assert ring.id == bell.id
        np.testing.assert_array_equal(collection.vector(ring.id), before)


def test_search_by_sound_and_by_type(tmp_path, mixed):
    with Collection.open(tmp_path / "db", "fake") as collection:
        collection.index([mixed])
        # The same recording as the query finds itself first.
        hits = collection.search_audio(str(FREEDESKTOP / "bell.oga"), k=3)
        assert Path(hits[0].path).name == "bell.oga"
        assert hits[0].score == pytest.approx(1.0, abs=1e-5)
        only_images = collection.search_audio(
            str(FREEDESKTOP / "bell.oga"), k=10, where={"type": "image"}
        )
        assert {Path(h.path).suffix for h in only_images} == {".png"}
        sounds = collection.search("anything", k=10, mode="vector", where={"type": "audio"})
        assert {Path(h.path).name for h in sounds} == {"bell.oga", "goodbye.wav", "thanks.wav"}


def test_cli_searches_by_sound(tmp_path, mixed):
    runner = CliRunner()
    db = str(tmp_path / "db")
    result = runner.invoke(main, ["index", "--db", db, "--model", "fake", str(mixed)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        main,
        ["search", "--db", db, "--audio", str(ASTERISK / "vm-goodbye.wav"), "--json", "-k", "2"],
    )
    assert result.exit_code == 0, result.output
    first = json.loads(result.output)["results"][0]
    assert Path(first["path"]).name == "goodbye.wav"
    result = runner.invoke(main, ["search", "--db", db, "--audio", str(mixed / "broken.wav")])
    assert result.exit_code != 0
    assert "broken.wav" in result.output and "Traceback" not in result.output
    result = runner.invoke(
        main, ["search", "--db", db, "--type", "audio", "--audio", str(mixed / "bell.oga")]
    )
    assert result.exit_code == 0, result.output
    assert ".png" not in result.output


def test_a_model_that_does_not_hear_leaves_sounds_out(tmp_path, mixed):
    """Sound files are not scanned for a model without audio (they are not skipped one by one)."""
    from checkpoints import save_hf_clip  # a tiny random CLIP the tests build and save

    model = f"hf:{save_hf_clip(tmp_path / 'clip')}"
    with Collection.open(tmp_path / "db", model) as collection:
        report = collection.index([mixed])
    assert report.added == 2
    assert not any(p.endswith((".wav", ".oga")) for p, _ in report.skipped)
