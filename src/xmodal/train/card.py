"""The final folder: the weights (written by the adapter), xmodal-model.json describing them for
programs (read back by xmodal.models.trained) and MODEL_CARD.md for people."""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import torch

from xmodal.atomic import atomic_write
from xmodal.models.registry import TRAINED_CARD
from xmodal.models.trained import FORMAT, FORMAT_VERSION, read_card
from xmodal.train.adapters import TrainAdapter
from xmodal.train.config import MONITOR, TrainConfig

MARKDOWN_CARD = "MODEL_CARD.md"
_STAGING = ".final-tmp"
_LIBRARIES = {"lite": (), "openclip": ("open_clip_torch",), "hf": ("transformers",)}


def library_versions(backend: str) -> dict[str, str]:
    versions = {}
    for name in ("xmodal", "torch", *_LIBRARIES.get(backend, ())):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "unknown"
    return versions


def build_card(
    adapter: TrainAdapter,
    config: TrainConfig,
    run: dict,
    after: dict,
    data: dict,
    trainable: dict[str, torch.nn.Parameter],
    device: torch.device,
    out: Path,
) -> dict:
    """The card as data: what was trained from what, on which data, how, and how well."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": out.name,
        "backend": adapter.backend,
        "base_model": adapter.base,
        "dim": adapter.encoder.dim,
        "logit_scale": float(adapter.log_scale.detach().float().exp()),
        "mode": {
            **config.to_dict()["mode"],
            "description": config.mode.describe(adapter.heads_name),
        },
        "trainable_parameters": sum(p.numel() for p in trainable.values()),
        "data": data,
        "hyperparameters": {
            **{k: v for k, v in config.to_dict().items() if k != "mode"},
            "effective_batch": config.batch_size * config.accum,
            "device": device.type,
        },
        "validation": {
            "monitor": f"{MONITOR[0]} {MONITOR[1]}, then mean_recall",
            "before": run["before"],
            "after": after,
            "best_epoch": run["best_epoch"],
            "epochs_run": run["epoch"],
            "stopped_early": run["stopped"],
        },
        "history": run["history"],
        "versions": library_versions(adapter.backend),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_final(adapter: TrainAdapter, out: Path, card: dict) -> None:
    """Weights into `out` next to the checkpoint, card last. The old card goes first, so a crash
    midway leaves a folder that is no model rather than one with mixed weights."""
    previous = out / TRAINED_CARD
    old_files = []
    if previous.is_file():
        # Plain names only: a hand-edited card must not point the clean-up outside `out`.
        old_files = [f for f in read_card(out).get("files", []) if Path(f).name == f]
        previous.unlink()
    staging = out / _STAGING
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    adapter.save(staging)
    card["files"] = sorted(p.name for p in staging.iterdir())
    for name in old_files:
        (out / name).unlink(missing_ok=True)
    for name in card["files"]:
        os.replace(staging / name, out / name)
    staging.rmdir()
    write_card(out, card)


def write_card(folder: Path, card: dict) -> None:
    """MODEL_CARD.md, then xmodal-model.json (atomically, last: it makes the folder a model)."""
    (folder / MARKDOWN_CARD).write_text(markdown(card), encoding="utf-8")
    with atomic_write(folder / TRAINED_CARD, "w", encoding="utf-8") as f:
        json.dump(card, f, indent=2, ensure_ascii=False)
        f.write("\n")


def _recalls(metrics: dict, direction: str) -> str:
    d = metrics[direction]
    return " / ".join(f"{d[k]:.3f}" for k in d if k.startswith("recall@"))


def markdown(card: dict) -> str:
    data, hp, val = card["data"], card["hyperparameters"], card["validation"]
    before, after = val["before"], val["after"]
    ks = ", ".join(k.split("@")[1] for k in before["text_to_image"] if k.startswith("recall@"))
    rows = "\n".join(f"| {k} | `{json.dumps(v)}` |" for k, v in hp.items())
    stop = "stopped early" if val["stopped_early"] else "ran every epoch"
    return f"""# {card["name"]}

Fine-tuned from **{card["base_model"]}** ({card["backend"]} backend) with `xmodal train`:
{card["mode"]["description"]} ({card["trainable_parameters"]:,} trainable parameters).
Vectors are {card["dim"]}-d; learned temperature (logit scale) {card["logit_scale"]:.2f}.

Use it anywhere a model name goes: `xmodal index PHOTOS --model DIR`, `load_model("DIR")`.

## Data

- source: `{data["source"]}` ({data["kind"]}), fingerprint `{data["fingerprint"]}`
- {data["train_pairs"]} training pairs ({data["train_images"]} images), \
{data["val_pairs"]} validation pairs ({data["val_images"]} images), split by caption
- {data["skipped"]} entries skipped

## Validation (recall@{ks}, {data["val_pairs"]} held-out pairs)

| | text -> image | image -> text | mean recall |
|---|---|---|---|
| before ({card["base_model"]}) | {_recalls(before, "text_to_image")} | \
{_recalls(before, "image_to_text")} | {before["mean_recall"]:.3f} |
| after (epoch {val["best_epoch"]}) | {_recalls(after, "text_to_image")} | \
{_recalls(after, "image_to_text")} | {after["mean_recall"]:.3f} |

Best epoch chosen by {val["monitor"]}; {val["epochs_run"]} epoch(s) run, {stop}.

## Hyper-parameters

| name | value |
|---|---|
{rows}

Created {card["created"]} with {", ".join(f"{k} {v}" for k, v in card["versions"].items())}.
"""
