"""`xmodal moderate`: verdicts on image files, or a policy's precision and recall on labelled
folders."""

from __future__ import annotations

import json
import sys

import click

from xmodal.cli.common import device_option, load_encoder, model_option, warn
from xmodal.errors import ImageLoadError

_BATCH = 16


@click.command("moderate")
@click.argument("images", nargs=-1)
@click.option(
    "--categories",
    "-c",
    "categories",
    default=None,
    help="category file (TOML, or YAML with PyYAML); default: the built-in policy",
)
@click.option(
    "--eval",
    "eval_dir",
    default=None,
    help="a folder with one subfolder of images per category (and safe/): print precision and "
    "recall per category instead of verdicts",
)
@click.option("--no-nsfw", is_flag=True, help="zero-shot only, without the open_nsfw model")
@click.option("--top", type=click.IntRange(min=1), default=3, help="scores to show per image")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per image per line")
@model_option
@device_option()
def moderate_cmd(images, categories, eval_dir, no_nsfw, top, as_json, model_name, device) -> None:
    """Say whether each of IMAGES is safe under a policy, and which categories it falls in.

    Unreadable files are reported and skipped; the exit code is 1 only if none could be read.
    """
    from xmodal.moderation import Moderator, load_policy

    if bool(images) == bool(eval_dir):
        raise click.UsageError("give IMAGE files, or --eval DIR, not both")
    policy = load_policy(categories)  # a bad file fails before the model loads
    moderator = Moderator(load_encoder(model_name, device=device), policy, nsfw=not no_nsfw)
    if eval_dir:
        from xmodal.moderation.evaluation import evaluate_policy

        report = evaluate_policy(moderator, eval_dir)
        for path, reason in report.skipped:
            warn(f"skipping {path}: {reason}")
        if as_json:
            rows = [dict(c.__dict__, f1=c.f1) for c in report.categories]
            record = {"images": report.images, "categories": rows}
            record |= {"safe_images": report.safe_images, "safe_flagged": report.safe_flagged}
            click.echo(json.dumps(record))
        else:
            click.echo(report.table())
        return
    judged = 0
    for start in range(0, len(images), _BATCH):
        judged += _judge_batch(moderator, images[start : start + _BATCH], top, as_json)
    if not judged:
        warn("error: none of the images could be read")
        sys.exit(1)


def _judge_batch(moderator, paths, top: int, as_json: bool) -> int:
    from xmodal.images import load_image
    from xmodal.moderation.moderator import NSFW_DECODE_SIDE

    loaded, names = [], []
    for path in paths:
        try:
            loaded.append(load_image(path, min_side=NSFW_DECODE_SIDE))
            names.append(path)
        except ImageLoadError as e:
            warn(f"skipping {path}: {e.reason}")
    if not loaded:
        return 0
    verdicts = moderator.judge(moderator.encoder.embed_images(loaded), loaded)
    for path, v in zip(names, verdicts):
        if as_json:
            scores = {k: round(s, 4) for k, s in v.scores.items()}
            record = {"path": path, "safe": v.safe, "flagged": v.flagged, "scores": scores}
            click.echo(json.dumps(record, ensure_ascii=False))
            continue
        shown = "  ".join(f"{k} {s:.2f}" for k, s in v.top(top))
        status = "safe" if v.safe else f"UNSAFE ({', '.join(v.flagged)})"
        click.echo(f"{path}: {status}  [{shown}]")
    return len(names)
