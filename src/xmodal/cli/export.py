"""`xmodal export onnx`: a torch model as ONNX graphs that `--model onnx:DIR` runs without torch."""

from __future__ import annotations

import click

from xmodal.cli.common import MODEL_HELP, warn


@click.group("export")
def export_cmd() -> None:
    """Export a model to another runtime."""


@export_cmd.command("onnx")
@click.option("--model", "-m", "model_name", required=True, help=MODEL_HELP)
@click.option("--out", "out", required=True, help="folder to write (new, empty, or an export)")
@click.option(
    "--int8",
    is_flag=True,
    help="also quantise to int8 (static, calibrated, for convolutional image towers; dynamic "
    "for transformers); a side keeps int8 only where it passes the parity checks",
)
@click.option(
    "--gallery",
    default=None,
    help="a folder of your own images (40+) to check parity on and calibrate int8 with "
    "(default: the clip art and sample photos that are installed)",
)
@click.option("--force", is_flag=True, help="replace an earlier export in --out")
def export_onnx_cmd(model_name, out, int8, gallery, force) -> None:
    """Write image and text graphs, tokenizer and preprocessing to OUT, checked against torch.

    The export is refused (nothing is written) when its fp32 graphs do not reproduce torch's
    vectors (cosine >= 0.9999 per row on real images and texts). Load it with --model onnx:OUT.
    """
    from xmodal.models.export import export_onnx

    report = export_onnx(model_name, out, int8=int8, gallery=gallery, force=force, log=warn)
    for side, figures in report.parity.items():
        shown = f"cosine min {figures['min_cosine']:.5f} mean {figures['mean_cosine']:.5f}"
        if "top10_overlap" in figures:
            shown += f", top-10 overlap {figures['top10_overlap']:.1%}"
        warn(f"parity {side}: {shown}")
    for note in report.notes:
        warn(note)
    sides = ", ".join(f"{side} {p}" for side, p in report.precision.items())
    click.echo(f"exported {report.source} to {report.folder} ({sides}) in {report.seconds:.0f} s")
    click.echo(f"use it with --model onnx:{report.folder}")
