"""The training state saved after every epoch, so a stopped run continues where it was.

One file, DIR/checkpoint/last.pt: the trainable weights (frozen ones come from the base model
again), the best weights so far, optimiser and gradient-scaler state, step, epoch, early-stopping
state, history and RNG states. Written to a temp file and renamed: a crash mid-write leaves the
previous epoch's checkpoint whole. Resuming checks first that the base model, the data (by
fingerprint) and the settings are those the run started with.
"""

from __future__ import annotations

from pathlib import Path

import torch

from xmodal.atomic import atomic_write
from xmodal.errors import InvalidInputError, ModelLoadError
from xmodal.models.registry import TRAINED_CARD
from xmodal.train.config import TrainConfig

CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_FILE = "last.pt"


def checkpoint_path(out: Path) -> Path:
    return out / CHECKPOINT_DIR / CHECKPOINT_FILE


def save_checkpoint(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        torch.save(state, f)


def load_checkpoint(path: Path) -> dict:
    try:
        # Tensors, numbers, strings and containers only: nothing in it runs code on load.
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and torch errors all mean "unusable file"
        raise ModelLoadError(f"cannot read the training checkpoint {path}: {e}") from e


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def check_out(out: Path, ckpt: Path, resume: bool) -> None:
    """A fresh run needs a new or empty folder; a resumed one, its checkpoint."""
    if resume:
        if not ckpt.is_file():
            raise InvalidInputError(f"nothing to resume in {out}: no {ckpt.relative_to(out)}")
        return
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"--out {out} is a file: give a new or empty folder")
    if out.is_dir() and any(out.iterdir()):
        if ckpt.is_file() or (out / TRAINED_CARD).is_file():
            raise InvalidInputError(
                f"{out} already holds a training run: add --resume to continue it, or give "
                "another --out"
            )
        raise InvalidInputError(f"{out} is not empty: give a new or empty folder as --out")


def check_same_run(state: dict, base: str, fingerprint: str, config: TrainConfig) -> None:
    """InvalidInputError listing what differs when a checkpoint is resumed with other inputs."""
    differences = []
    if state["base"] != base:
        differences.append(f"base model {state['base']} -> {base}")
    if state["fingerprint"] != fingerprint:
        differences.append("the pairs changed (their fingerprint differs)")
    saved, asked = state["config"], config.to_dict()
    differences += [f"{k} {saved.get(k)} -> {asked[k]}" for k in asked if saved.get(k) != asked[k]]
    if differences:
        raise InvalidInputError(
            "cannot resume: the run in the checkpoint differs ("
            + "; ".join(differences)
            + "); resume with the command line that started it"
        )
