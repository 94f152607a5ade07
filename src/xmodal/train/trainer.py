"""The training loop: contrastive fine-tuning of a base model on image-caption pairs.

Read top to bottom: load and split the pairs, wrap the base model in its backend's adapter,
choose what trains, prepare every input once, measure validation recall, then per epoch train
(AdamW, warm-up + cosine, accumulation, clipping), validate, keep the best weights, checkpoint,
and stop early when validation stops improving. The best weights go into the final folder with
their model card.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from xmodal.evaluate.retrieval import retrieval_metrics
from xmodal.models.device import torch_device as resolve_torch_device
from xmodal.pairs import load_pairs
from xmodal.train.adapters import TrainAdapter, adapter_for
from xmodal.train.adapters.base import take, to_device
from xmodal.train.card import build_card, write_final
from xmodal.train.checkpoint import (
    check_out,
    check_same_run,
    checkpoint_path,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from xmodal.train.config import MONITOR, TrainConfig
from xmodal.train.data import Prepared, batches, prepare
from xmodal.train.loss import clamp_log_scale_, contrastive_loss
from xmodal.train.schedule import lr_at

# Rows per forward pass when validating: bounds activation memory for large image towers.
_EVAL_BATCH = 64


@dataclass
class EpochReport:
    epoch: int
    epochs: int
    loss: float  # mean training loss over the epoch's pairs
    lr: float  # learning rate of the epoch's last step
    seconds: float  # training time, validation excluded
    pairs_per_second: float
    metrics: dict  # retrieval_metrics on the validation pairs
    improved: bool  # a new best validation score


@dataclass
class TrainResult:
    out: Path
    card: dict
    before: dict  # validation metrics of the untrained model
    after: dict  # those of the weights saved (the best epoch)
    best_epoch: int  # 0: no epoch beat the untrained model, which was saved as it was
    epochs_run: int
    stopped_early: bool
    resumed_from: int  # epoch the run continued after; 0 for a fresh run
    skipped: list[tuple[str, str]] = field(default_factory=list)


def train(
    pairs: str | os.PathLike,
    base: str,
    out: str | os.PathLike,
    config: TrainConfig | None = None,
    *,
    resume: bool = False,
    device: str | None = None,
    progress: bool = False,
    on_epoch: Callable[[EpochReport], None] | None = None,
) -> TrainResult:
    """Fine-tune model `base` on the pairs file or folder `pairs`; the result goes to `out`.

    resume: continue the run checkpointed in `out` (same base, data and config), ending with the
    same weights as an uninterrupted run. device: cpu, cuda, cuda:N, mps or auto (the default:
    cuda when there is one, else mps, else cpu); an unusable one is a DeviceError.
    on_epoch is called after each epoch's checkpoint is written.
    """
    config = config or TrainConfig()
    out = Path(out).expanduser()
    ckpt = checkpoint_path(out)
    check_out(out, ckpt, resume)
    dataset = load_pairs(pairs)
    fingerprint = dataset.fingerprint()
    state = load_checkpoint(ckpt) if resume else None
    if state is not None:
        check_same_run(state, base, fingerprint, config)
    train_set, val_set = dataset.split(config.val_fraction, config.seed)

    torch_device = resolve_torch_device(device or "auto")
    torch.manual_seed(config.seed)
    adapter = adapter_for(base, str(torch_device))
    adapter.module.to(torch_device)
    trainable = _select(adapter, config)

    skipped = list(dataset.skipped)
    train_data = prepare(adapter, train_set.pairs, skipped, "training", progress)
    val_data = prepare(adapter, val_set.pairs, skipped, "validation", progress)

    optimizer = _optimizer(trainable, config)
    # Mixed precision on a GPU only: bfloat16 where supported, else float16 with loss scaling.
    use_amp = torch_device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    def autocast():
        if not use_amp:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=amp_dtype)

    micro_batches = len(batches(len(train_data), config.batch_size, config.seed, 0))
    steps_per_epoch = math.ceil(micro_batches / config.accum)
    total_steps = steps_per_epoch * config.epochs
    warmup_steps = round(config.warmup * total_steps)

    if state is None:
        before = _validate(adapter, val_data, torch_device, autocast)
        run = {
            "epoch": 0,
            "step": 0,
            "best": _snapshot(trainable),  # the untrained weights until an epoch beats them
            "best_score": list(_score(before)),
            "best_epoch": 0,
            "bad_epochs": 0,
            "stopped": False,
            "before": before,
            "history": [],
        }
    else:
        run = {k: state[k] for k in _RUN_KEYS}
        _restore(trainable, state["trainable"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
    resumed_from = run["epoch"]

    while run["epoch"] < config.epochs and not run["stopped"]:
        epoch = run["epoch"] + 1
        # -- one epoch of training ---------------------------------------------------------
        adapter.module.train()
        order = batches(len(train_data), config.batch_size, config.seed, epoch)
        groups = [order[i : i + config.accum] for i in range(0, len(order), config.accum)]
        bar = _progress_bar(progress, sum(len(b) for b in order), epoch, config.epochs)
        loss_sum, seen, lr = 0.0, 0, config.peak_lr
        start = time.perf_counter()
        for group in groups:
            lr = lr_at(
                run["step"],
                peak=config.peak_lr,
                warmup=warmup_steps,
                total=total_steps,
                floor=config.min_lr,
            )
            for param_group in optimizer.param_groups:
                param_group["lr"] = lr
            for rows in group:
                with autocast():
                    loss = _batch_loss(adapter, train_data, rows, torch_device)
                # Average over the group's micro-batches: one step for the effective batch.
                scaler.scale(loss / len(group)).backward()
                loss_sum += loss.item() * len(rows)
                seen += len(rows)
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(trainable.values(), config.clip_grad)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            if adapter.log_scale.requires_grad:
                clamp_log_scale_(adapter.log_scale)
            run["step"] += 1
            if bar is not None:
                bar.update(sum(len(rows) for rows in group))
                rate = seen / max(time.perf_counter() - start, 1e-9)
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}", pairs_s=f"{rate:.0f}")
        seconds = time.perf_counter() - start
        if bar is not None:
            bar.close()

        # -- validation, early stopping, checkpoint ----------------------------------------
        metrics = _validate(adapter, val_data, torch_device, autocast)
        improved = _score(metrics) > tuple(run["best_score"])
        if improved:
            run.update(best=_snapshot(trainable), best_score=list(_score(metrics)))
            run.update(best_epoch=epoch, bad_epochs=0)
        else:
            run["bad_epochs"] += 1
        report = EpochReport(
            epoch=epoch,
            epochs=config.epochs,
            loss=loss_sum / max(seen, 1),
            lr=lr,
            seconds=seconds,
            pairs_per_second=seen / seconds,
            metrics=metrics,
            improved=improved,
        )
        run["history"].append({k: v for k, v in asdict(report).items() if k != "epochs"})
        run["epoch"] = epoch
        run["stopped"] = run["bad_epochs"] >= config.patience and epoch < config.epochs
        save_checkpoint(
            ckpt,
            {
                **run,
                "base": base,
                "fingerprint": fingerprint,
                "config": config.to_dict(),
                "trainable": _snapshot(trainable),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(),
                "rng": rng_state(),
            },
        )
        if on_epoch is not None:
            on_epoch(report)

    # -- the final folder: the best weights and their card --------------------------------
    _restore(trainable, run["best"])
    best = run["best_epoch"]
    after = run["history"][best - 1]["metrics"] if best else run["before"]
    data = {
        "source": str(dataset.source),
        "kind": dataset.kind,
        "fingerprint": fingerprint,
        "train_pairs": len(train_data),
        "train_images": train_data.relevant.shape[1],
        "val_pairs": len(val_data),
        "val_images": val_data.relevant.shape[1],
        "skipped": len(skipped),
    }
    card = build_card(adapter, config, run, after, data, trainable, torch_device, out)
    write_final(adapter, out, card)
    return TrainResult(
        out=out,
        card=card,
        before=run["before"],
        after=after,
        best_epoch=run["best_epoch"],
        epochs_run=run["epoch"],
        stopped_early=run["stopped"],
        resumed_from=resumed_from,
        skipped=skipped,
    )


_RUN_KEYS = (
    "epoch",
    "step",
    "best",
    "best_score",
    "best_epoch",
    "bad_epochs",
    "stopped",
    "before",
    "history",
)


def _batch_loss(
    adapter: TrainAdapter, data: Prepared, rows: np.ndarray, device: torch.device
) -> torch.Tensor:
    images = take(data.images, torch.from_numpy(data.pair_image[rows]))  # b image rows
    texts = take(data.texts, torch.from_numpy(data.pair_text[rows]))  # b text rows
    return contrastive_loss(
        adapter.image_features(to_device(images, device)),  # (b, d)
        adapter.text_features(to_device(texts, device)),  # (b, d)
        adapter.log_scale,
    )


@torch.no_grad()
def _validate(adapter: TrainAdapter, data: Prepared, device: torch.device, autocast) -> dict:
    adapter.module.eval()

    def embed(forward, inputs, n: int) -> np.ndarray:
        parts = []
        for start in range(0, n, _EVAL_BATCH):
            rows = torch.arange(start, min(start + _EVAL_BATCH, n))
            with autocast():
                features = forward(to_device(take(inputs, rows), device))
            parts.append(torch.nn.functional.normalize(features.float(), dim=-1).cpu().numpy())
        return np.concatenate(parts)

    n_texts, n_images = data.relevant.shape
    image_vecs = embed(adapter.image_features, data.images, n_images)
    text_vecs = embed(adapter.text_features, data.texts, n_texts)
    return retrieval_metrics(image_vecs, text_vecs, data.relevant)


def _score(metrics: dict) -> tuple[float, float]:
    """What early stopping compares: text->image recall@5, then mean recall for ties."""
    direction, key = MONITOR
    return (metrics[direction][key], metrics["mean_recall"])


def _optimizer(trainable: dict[str, torch.nn.Parameter], config: TrainConfig):
    """AdamW with CLIP's betas; no weight decay on biases, norms and the temperature (ndim < 2)."""
    decay = [p for p in trainable.values() if p.ndim >= 2]
    no_decay = [p for p in trainable.values() if p.ndim < 2]
    return torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.peak_lr,
        betas=(0.9, 0.98),
        eps=1e-6,
    )


def _select(adapter: TrainAdapter, config: TrainConfig) -> dict[str, torch.nn.Parameter]:
    """Freeze everything but the mode's parameters; returns those, by name."""
    names = set(adapter.trainable_names(config.mode))
    chosen = {}
    for name, param in adapter.module.named_parameters():
        param.requires_grad_(name in names)
        if name in names:
            chosen[name] = param
    return chosen


def _snapshot(params: dict[str, torch.nn.Parameter]) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu().clone() for name, p in params.items()}


def _restore(params: dict[str, torch.nn.Parameter], saved: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(saved[name])


def _progress_bar(progress: bool, total: int, epoch: int, epochs: int):
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="pair", desc=f"epoch {epoch}/{epochs}", leave=False)
