"""Commands on files and texts, no collection: embed, classify, similarity."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import numpy as np

from xmodal.cli.common import (
    batch_option,
    device_option,
    embed_paths,
    load_encoder,
    model_option,
    warn,
)
from xmodal.cli.shards import embed_to_shards, engine_options


@click.group("embed")
def embed_cmd() -> None:
    """Embed texts, images or sounds: JSON Lines on stdout, or a .npy matrix with -o."""


def _npy_path(out: str) -> Path:
    # np.save adds .npy to a name without it; the messages and the paths file follow suit.
    path = Path(out)
    return path if path.suffix == ".npy" else path.with_name(path.name + ".npy")


def _emit_embeddings(keys: list[tuple[str, str]], vectors: np.ndarray, out: str | None) -> None:
    if out:
        path = _npy_path(out)
        np.save(path, vectors)
        warn(f"wrote {vectors.shape[0]}x{vectors.shape[1]} float32 to {path}")
        return
    for (field, value), vec in zip(keys, vectors):
        click.echo(
            json.dumps(
                {field: value, "embedding": [round(float(x), 7) for x in vec]}, ensure_ascii=False
            )
        )


def _write_paths(out: str, rows: list[str], skipped: list[tuple[str, str]]) -> None:
    """OUT.paths.json beside OUT.npy: row i of the matrix is rows[i]; skipped files with why."""
    npy = _npy_path(out)
    path = npy.with_name(npy.name.removesuffix(".npy") + ".paths.json")
    record = {
        "matrix": npy.name,
        "rows": rows,
        "skipped": [{"path": p, "reason": r} for p, r in skipped],
    }
    path.write_text(json.dumps(record, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    warn(f"wrote the path of each row (and {len(skipped)} skipped) to {path}")


@embed_cmd.command("text")
@click.argument("texts", nargs=-1, required=True)
@click.option("-o", "--output", default=None, help="write a .npy file instead of JSON")
@model_option
@device_option()
@batch_option
def embed_text_cmd(texts, output, model_name, device, batch_size) -> None:
    """Embed TEXTS (one vector per argument, in order)."""
    encoder = load_encoder(model_name, batch_size, device)
    vectors = encoder.embed_texts(list(texts), progress=True)
    _emit_embeddings([("text", t) for t in texts], vectors, output)


@embed_cmd.command("image")
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "-o",
    "--output",
    default=None,
    help="write a .npy matrix instead of JSON, and OUT.paths.json with the path of each row",
)
@click.option(
    "--out",
    "shards",
    default=None,
    help="with --engine ray: a new folder for Parquet embedding shards and their manifest "
    "(folders in PATHS are walked); `xmodal import` loads them into a collection",
)
@model_option
@device_option()
@batch_option
@engine_options
def embed_image_cmd(paths, output, shards, model_name, device, batch_size, engine) -> None:
    """Embed images at PATHS; unreadable files are reported and make the exit code 1.

    With -o, rows follow PATHS minus the unreadable files: OUT.paths.json says which is which.
    """
    if engine is None and shards:
        raise click.UsageError("--out writes Parquet shards with --engine ray; -o writes a .npy")
    if engine is not None and (output or not shards):
        raise click.UsageError("--engine ray writes Parquet shards: give --out SHARDS/, not -o")
    if engine is not None:
        sys.exit(1 if embed_to_shards(engine, paths, shards, model_name, batch_size) else 0)
    _embed_files(load_encoder(model_name, batch_size, device), paths, output)


@embed_cmd.command("audio")
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "-o",
    "--output",
    default=None,
    help="write a .npy matrix instead of JSON, and OUT.paths.json with the path of each row",
)
@model_option
@device_option()
@batch_option
def embed_audio_cmd(paths, output, model_name, device, batch_size) -> None:
    """Embed sounds at PATHS (WAV, FLAC, OGG, MP3, M4A...; with a model that hears);
    unreadable files are reported and make the exit code 1."""
    from xmodal.audio import is_audio_file

    not_audio = [p for p in paths if not is_audio_file(p)]
    if not_audio:
        raise click.UsageError(f"not a sound file (by its extension): {not_audio[0]}")
    _embed_files(load_encoder(model_name, batch_size, device), paths, output)


def _embed_files(encoder, paths, output) -> None:
    keys, vectors, skipped = [], [], []
    for path, vec, reason in embed_paths(encoder, list(paths)):
        if vec is None:
            skipped.append((path, reason))
            warn(f"skipping {path}: {reason}")
            continue
        keys.append(("path", path))
        vectors.append(vec)
    if output:
        # Written even when every file failed, so the matrix and its paths always agree.
        matrix = np.stack(vectors) if vectors else np.zeros((0, encoder.dim), np.float32)
        _emit_embeddings(keys, matrix, output)
        _write_paths(output, [path for _, path in keys], skipped)
    elif vectors:
        _emit_embeddings(keys, np.stack(vectors), output)
    sys.exit(1 if skipped else 0)


@click.command("classify")
@click.argument("paths", nargs=-1, required=True)
@click.option("--labels", "-l", required=True, help='comma-separated labels, e.g. "cat,dog,car"')
@click.option(
    "--template",
    "-t",
    "templates",
    multiple=True,
    help="prompt template with {} for the label (repeatable; averaged). Default: the model's own",
)
@click.option("--top", type=click.IntRange(min=1), default=None, help="labels to show per image")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per image per line")
@model_option
@device_option()
@batch_option
def classify_cmd(paths, labels, templates, top, as_json, model_name, device, batch_size) -> None:
    """Zero-shot classify images (and sounds, when the model hears) at PATHS against LABELS,
    best label first."""
    from xmodal.audio import is_audio_file
    from xmodal.engine.zeroshot import SOUND_TEMPLATES, ZeroShotClassifier, parse_labels

    label_list = parse_labels(labels)  # bad labels fail before the model loads
    encoder = load_encoder(model_name, batch_size, device)
    classifier = ZeroShotClassifier(encoder, label_list, templates)
    sound_classifier = None  # sounds are labelled with sound prompts unless --template is given
    shown = top if top or as_json else 3
    failed = 0
    if not as_json:
        click.echo(f"{'IMAGE':<40}  {'LABEL':<24}  SCORE")
    for path, vec, reason in embed_paths(classifier.encoder, list(paths)):
        if vec is None:
            failed += 1
            warn(f"error: {path}: {reason}")
            continue
        judge = classifier
        if is_audio_file(path) and not templates:
            if sound_classifier is None:
                sound_classifier = ZeroShotClassifier(encoder, label_list, SOUND_TEMPLATES)
            judge = sound_classifier
        ranked = judge.rank(vec[None, :], shown)[0]
        if as_json:
            labels_out = [{"label": s.label, "score": round(s.score, 6)} for s in ranked]
            click.echo(json.dumps({"path": path, "labels": labels_out}, ensure_ascii=False))
            continue
        for i, s in enumerate(ranked):
            click.echo(f"{path if i == 0 else '':<40}  {s.label:<24}  {s.score:6.1%}")
    sys.exit(1 if failed else 0)


@click.command("similarity")
@click.option("--text", "-t", "text", required=True, help="the text")
@click.option("--image", "-i", "image", required=True, help="path of the image")
@click.option("--json", "as_json", is_flag=True)
@model_option
@device_option()
def similarity_cmd(text, image, as_json, model_name, device) -> None:
    """Cosine similarity between a text and an image, and the model's scaled score."""
    from xmodal.images import load_image

    picture = load_image(image)
    encoder = load_encoder(model_name, device=device)
    cosine = float(encoder.embed_text(text) @ encoder.embed_image(picture))
    result = {
        "text": text,
        "image": image,
        "model": encoder.name,
        "cosine": round(cosine, 6),
        "score": round(cosine * encoder.logit_scale, 4),
    }
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False))
    else:
        click.echo(
            f"cosine {result['cosine']:.4f}  scaled score {result['score']:.2f}  ({encoder.name})"
        )
