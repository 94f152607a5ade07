"""`xmodal train`: fine-tune a model on image-caption pairs."""

from __future__ import annotations

import click

from xmodal.cli.common import device_option, warn_skipped


def _recalls(metrics: dict, direction: str = "text_to_image") -> str:
    d = metrics[direction]
    return "/".join(f"{d[k]:.1%}" for k in d if k.startswith("recall@"))


@click.command("train")
@click.argument("pairs")
@click.option(
    "--model",
    "-m",
    "base",
    required=True,
    help="base model to fine-tune: lite, lite-en, openclip:ARCH/PRETRAINED or hf:REPO_OR_DIR",
)
@click.option("--out", "-o", required=True, help="folder for the trained model (new or empty)")
@click.option(
    "--mode",
    type=click.Choice(["heads", "blocks", "all"]),
    default="heads",
    show_default=True,
    help="heads: projection heads only (small data); blocks: also the last --blocks blocks; "
    "all: every weight",
)
@click.option(
    "--blocks",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="with --mode blocks: how many final blocks train",
)
@click.option(
    "--tower",
    type=click.Choice(["image", "text", "both"]),
    default="both",
    show_default=True,
    help="with --mode blocks: whose blocks train",
)
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option(
    "--batch-size",
    type=click.IntRange(min=2),
    default=64,
    show_default=True,
    help="pairs per forward pass: each pair's negatives are the others",
)
@click.option(
    "--accum",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="forward passes per optimiser step (effective batch = batch size x accum)",
)
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="peak learning rate (default: 1e-3 heads, 1e-4 blocks, 1e-5 all)",
)
@click.option(
    "--val-fraction",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.2,
    show_default=True,
    help="share of the captions held out for validation",
)
@click.option(
    "--patience",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="stop after this many epochs without better validation recall@5",
)
@click.option("--seed", type=int, default=0, show_default=True)
@device_option(
    "where training runs: cpu, cuda, cuda:N, mps or auto (mixed precision on CUDA). "
    "Default: $XMODAL_DEVICE, else auto (cuda when there is one, else mps, else cpu)"
)
@click.option("--resume", is_flag=True, help="continue the run checkpointed in --out")
def train_cmd(pairs, base, out, mode, blocks, tower, device, resume, **hyperparameters) -> None:
    """Fine-tune a model on the image-caption pairs PAIRS (a CSV/JSONL file or a folder, as for
    `xmodal eval`); the result loads anywhere with --model OUT.

    Validation recall is measured on held-out captions before training and after every epoch;
    the best epoch's weights are saved. Re-run the same command with --resume to continue a
    stopped run.
    """
    import os
    import shlex

    from xmodal.train import TrainConfig, TrainMode, train

    # --blocks and --tower only shape the blocks mode.
    train_mode = TrainMode(mode, blocks, tower) if mode == "blocks" else TrainMode(mode)
    config = TrainConfig(mode=train_mode, **hyperparameters)

    def on_epoch(r) -> None:
        best = "  *best" if r.improved else ""
        click.echo(
            f"epoch {r.epoch}/{r.epochs}  loss {r.loss:.4f}  val text→image recall@1/5/10 "
            f"{_recalls(r.metrics)}  {r.seconds:.1f} s ({r.pairs_per_second:.0f} pairs/s){best}"
        )

    result = train(
        pairs,
        base,
        out,
        config,
        resume=resume,
        # Training's own default is auto, not XMODAL_DEVICE's default of cpu.
        device=device or os.environ.get("XMODAL_DEVICE") or "auto",
        progress=True,
        on_epoch=on_epoch,
    )
    warn_skipped(result.skipped)
    data = result.card["data"]
    click.echo(
        f"\n{base} trained on {data['train_pairs']} pairs, validated on {data['val_pairs']}: "
        f"{result.epochs_run} epoch(s){', stopped early' if result.stopped_early else ''}"
    )
    click.echo(
        f"validation text→image recall@1/5/10: {_recalls(result.before)} (before) -> "
        f"{_recalls(result.after)} (epoch {result.best_epoch})"
    )
    if result.best_epoch == 0:
        click.echo("no epoch beat the base model on validation: the saved weights are untrained")
    where = shlex.quote(str(result.out))
    click.echo(f"saved to {result.out} (described in MODEL_CARD.md; checkpoint/ is for --resume)")
    click.echo(f"use it:  xmodal index PHOTOS --model {where}")
    compare = f"xmodal eval {shlex.quote(pairs)} --model {shlex.quote(base)} --model {where}"
    click.echo(f"         {compare}")
