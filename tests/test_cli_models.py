"""--device on every command that runs a model, and model paths recorded so that a collection
opens from any folder. Subprocesses where the exit code and stderr are what a user sees."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from xmodal.cli import main
from xmodal.engine.collection import Collection

torch = pytest.importorskip("torch")
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")

# Every command that runs a model, with the arguments it needs to get that far.
ENCODING_COMMANDS = [
    ["embed", "text", "a cat"],
    ["embed", "image", "x.jpg"],
    ["classify", "x.jpg", "-l", "cat,dog"],
    ["similarity", "-t", "a cat", "-i", "x.jpg"],
    ["index", "photos"],
    ["search", "a cat"],
    ["eval", "pairs.csv"],
    ["serve"],
    ["demo"],
    ["train", "pairs.csv", "-m", "lite", "-o", "out"],
]


def run_xmodal(*args: str, cwd=None, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "xmodal", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env={**os.environ, **env},
    )


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.mark.parametrize("command", ENCODING_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_every_encoding_command_has_device(command):
    result = invoke(*command[:2] if command[0] == "embed" else command[:1], "--help")
    assert result.exit_code == 0
    assert "--device" in result.stdout and "cuda:N" in result.stdout


def test_dedup_runs_no_model_and_has_no_device():
    assert "device" not in [p.name for p in main.commands["dedup"].params]


@no_cuda
@pytest.mark.parametrize("command", ENCODING_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_unavailable_cuda_is_one_line_before_anything_runs(command, tmp_path):
    db = tmp_path / "db"
    extra = ["--db", str(db)] if command[0] in ("index", "search", "serve") else []
    result = run_xmodal(*command, *extra, "--device", "cuda", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("error: device 'cuda' asked for"), result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    # Checked before anything was opened, created or loaded.
    assert not db.exists() and not (tmp_path / "out").exists()


def test_bad_device_names_the_choices(photos):
    result = run_xmodal("embed", "text", "a cat", "-m", "fake", "--device", "gpu")
    assert result.returncode == 1
    assert "unknown device 'gpu'" in result.stderr and "cuda:N" in result.stderr
    assert "Traceback" not in result.stderr


@no_cuda
def test_xmodal_device_applies_to_the_collections_own_model(tmp_path, photos):
    # No --device: XMODAL_DEVICE reaches the model the collection loads for itself.
    result = run_xmodal(
        "index", str(photos[0].path), "--db", str(tmp_path / "db"), XMODAL_DEVICE="cuda:0"
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: device 'cuda:0' asked for"), result.stderr
    bad = run_xmodal("embed", "text", "a cat", XMODAL_DEVICE="quantum")
    assert bad.returncode == 1 and "unknown device 'quantum' (XMODAL_DEVICE)" in bad.stderr


def test_cpu_and_auto_run_here(photos, monkeypatch):
    monkeypatch.setenv("XMODAL_DEVICE", "cpu")  # restored after: --device sets it in-process
    path = str(photos[0].path)
    for device in ("cpu", "auto"):
        result = invoke("similarity", "-t", "a cat", "-i", path, "-m", "fake", "--device", device)
        assert result.exit_code == 0 and "cosine" in result.stdout


# -- model paths as typed, recorded absolute ---------------------------------------------------


@pytest.fixture
def relative_hf_model(tmp_path, photos):
    """A work folder holding photos/ and a tiny CLIP checkpoint at ./models/clip."""
    from checkpoints import save_hf_clip

    work = tmp_path / "work"
    (work / "photos").mkdir(parents=True)
    for p in photos[:5]:
        shutil.copy(p.path, work / "photos" / p.path.name)
    save_hf_clip(work / "models" / "clip")
    return work


def test_relative_model_folder_is_recorded_absolute(relative_hf_model, tmp_path):
    work = relative_hf_model
    indexed = run_xmodal("index", "photos", "--db", "db", "--model", "hf:./models/clip", cwd=work)
    assert indexed.returncode == 0, indexed.stderr
    with Collection.open(work / "db", create=False) as collection:
        assert collection.model_name == f"hf:{work / 'models' / 'clip'}"
    # From another folder the collection finds its model, and says the same as from its own.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    found = run_xmodal("search", "a cat", "--db", str(work / "db"), "--json", cwd=elsewhere)
    assert found.returncode == 0, found.stderr
    here = run_xmodal("search", "a cat", "--db", "db", "--json", cwd=work)
    assert json.loads(found.stdout)["results"] == json.loads(here.stdout)["results"]
    assert len(json.loads(found.stdout)["results"]) == 5
    # Naming the model relatively again, from its own folder, is the same model.
    again = run_xmodal("search", "a cat", "--db", "db", "--model", "hf:models/clip", cwd=work)
    assert again.returncode == 0, again.stderr


def test_relative_openclip_checkpoint_is_recorded_absolute(tmp_path, monkeypatch, photos):
    from checkpoints import save_openclip_checkpoint

    arch, path = save_openclip_checkpoint(tmp_path / "ckpt", "safetensors")
    monkeypatch.chdir(tmp_path)
    relative = os.path.relpath(path, tmp_path)
    result = invoke(
        "index", str(photos[0].path), "--db", "db", "--model", f"openclip:{arch}/{relative}"
    )
    assert result.exit_code == 0, result.stderr
    with Collection.open(tmp_path / "db", create=False) as collection:
        assert collection.model_name == f"openclip:{arch}/{path.resolve()}"
    # Tags and hub names stay as typed.
    from xmodal.models.registry import canonical_name

    assert canonical_name(f"openclip:{arch}/random") == f"openclip:{arch}/random"
    assert canonical_name("hf:openai/clip-vit-base-patch32") == "hf:openai/clip-vit-base-patch32"
