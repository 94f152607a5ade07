"""The `xmodal` command line. The only module (with the server) that prints or exits."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence

import click
import numpy as np

from xmodal.errors import ImageLoadError, XmodalError

MODEL_HELP = "model name (default: $XMODAL_MODEL or 'lite'); see `xmodal models`"


def _model_option(f):
    return click.option("--model", "-m", "model_name", default=None, help=MODEL_HELP)(f)


def _batch_option(f):
    return click.option(
        "--batch-size", type=click.IntRange(min=1), default=None, help="items per model call"
    )(f)


def _load_encoder(model_name: str | None, batch_size: int | None = None):
    from xmodal.models import load_model

    encoder = load_model(model_name)
    if batch_size:
        encoder.batch_size = batch_size
    return encoder


def _warn(message: str) -> None:
    click.echo(message, err=True)


def _embed_paths(encoder, paths: Sequence[str]) -> Iterator[tuple[str, np.ndarray | None, str]]:
    """Yield (path, vector, "") per readable image and (path, None, reason) per unreadable one.

    Images are loaded a batch at a time so one bad file costs only itself and memory stays
    bounded by the batch size.
    """
    from xmodal.images import load_image

    for start in range(0, len(paths), encoder.batch_size):
        chunk = paths[start : start + encoder.batch_size]
        loaded, names = [], []
        for path in chunk:
            try:
                loaded.append(load_image(path))
                names.append(path)
            except ImageLoadError as e:
                yield path, None, e.reason
        vectors = encoder.embed_images(loaded) if loaded else []
        yield from ((name, vec, "") for name, vec in zip(names, vectors))


class _Group(click.Group):
    """Turns xmodal's typed errors into one-line messages and exit code 1, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except XmodalError as e:
            _warn(f"error: {e}")
            ctx.exit(1)


@click.group(cls=_Group)
@click.version_option(package_name="xmodal")
def main() -> None:
    """Texts and images in one vector space: embed, classify and compare, offline by default."""


@main.command("models")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per model")
def models_cmd(as_json: bool) -> None:
    """List model names with their dimension and whether they can load now."""
    from xmodal.models import list_models

    infos = list_models()
    if as_json:
        for info in infos:
            click.echo(json.dumps(info.__dict__, ensure_ascii=False))
        return
    width = max(len(i.name) for i in infos)
    click.echo(f"{'NAME':<{width}}  {'DIM':>5}  {'READY':<5}  NOTE")
    for i in infos:
        dim = str(i.dim) if i.dim else "?"
        click.echo(f"{i.name:<{width}}  {dim:>5}  {'yes' if i.available else 'no':<5}  {i.note}")


@main.group("embed")
def embed_cmd() -> None:
    """Embed texts or images: JSON Lines on stdout, or a .npy matrix with -o."""


def _emit_embeddings(keys: list[tuple[str, str]], vectors: np.ndarray, out: str | None) -> None:
    if out:
        np.save(out, vectors)
        _warn(f"wrote {vectors.shape[0]}x{vectors.shape[1]} float32 to {out}")
        return
    for (field, value), vec in zip(keys, vectors):
        click.echo(
            json.dumps(
                {field: value, "embedding": [round(float(x), 7) for x in vec]}, ensure_ascii=False
            )
        )


@embed_cmd.command("text")
@click.argument("texts", nargs=-1, required=True)
@click.option("-o", "--output", default=None, help="write a .npy file instead of JSON")
@_model_option
@_batch_option
def embed_text_cmd(texts, output, model_name, batch_size) -> None:
    """Embed TEXTS (one vector per argument)."""
    encoder = _load_encoder(model_name, batch_size)
    vectors = encoder.embed_texts(list(texts), progress=True)
    _emit_embeddings([("text", t) for t in texts], vectors, output)


@embed_cmd.command("image")
@click.argument("paths", nargs=-1, required=True)
@click.option("-o", "--output", default=None, help="write a .npy file instead of JSON")
@_model_option
@_batch_option
def embed_image_cmd(paths, output, model_name, batch_size) -> None:
    """Embed images at PATHS; unreadable files are reported and make the exit code 1."""
    encoder = _load_encoder(model_name, batch_size)
    keys, vectors, failed = [], [], 0
    for path, vec, reason in _embed_paths(encoder, list(paths)):
        if vec is None:
            failed += 1
            _warn(f"skipping {path}: {reason}")
            continue
        keys.append(("path", path))
        vectors.append(vec)
    if vectors:
        _emit_embeddings(keys, np.stack(vectors), output)
    sys.exit(1 if failed else 0)


@main.command("classify")
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
@_model_option
@_batch_option
def classify_cmd(paths, labels, templates, top, as_json, model_name, batch_size) -> None:
    """Zero-shot classify images at PATHS against LABELS, best label first."""
    from xmodal.engine.zeroshot import ZeroShotClassifier, parse_labels

    label_list = parse_labels(labels)  # bad labels fail before the model loads
    classifier = ZeroShotClassifier(_load_encoder(model_name, batch_size), label_list, templates)
    shown = top if top or as_json else 3
    failed = 0
    if not as_json:
        click.echo(f"{'IMAGE':<40}  {'LABEL':<24}  SCORE")
    for path, vec, reason in _embed_paths(classifier.encoder, list(paths)):
        if vec is None:
            failed += 1
            _warn(f"error: {path}: {reason}")
            continue
        ranked = classifier.rank(vec[None, :], shown)[0]
        if as_json:
            labels_out = [{"label": s.label, "score": round(s.score, 6)} for s in ranked]
            click.echo(json.dumps({"path": path, "labels": labels_out}, ensure_ascii=False))
            continue
        for i, s in enumerate(ranked):
            click.echo(f"{path if i == 0 else '':<40}  {s.label:<24}  {s.score:6.1%}")
    sys.exit(1 if failed else 0)


@main.command("similarity")
@click.option("--text", "-t", "text", required=True, help="the text")
@click.option("--image", "-i", "image", required=True, help="path of the image")
@click.option("--json", "as_json", is_flag=True)
@_model_option
def similarity_cmd(text, image, as_json, model_name) -> None:
    """Cosine similarity between a text and an image, and the model's scaled score."""
    from xmodal.images import load_image

    picture = load_image(image)
    encoder = _load_encoder(model_name)
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


@main.command("demo")
@click.option(
    "--dir",
    "folder",
    default="xmodal-demo",
    show_default=True,
    help="where the sample photos are written",
)
@_model_option
def demo_cmd(folder, model_name) -> None:
    """Write 14 real sample photos, classify them, and search them with English and Hindi text."""
    from xmodal.engine.zeroshot import ZeroShotClassifier
    from xmodal.samples import DISTRACTOR_LABELS, sample_photos

    photos = sample_photos(folder)
    encoder = _load_encoder(model_name)
    click.echo(f"model {encoder.name} (dim {encoder.dim}); {len(photos)} photos in {folder}/")
    vectors = encoder.embed_images([p.path for p in photos], progress=True)

    labels = [p.label for p in photos] + list(DISTRACTOR_LABELS)
    ranked = ZeroShotClassifier(encoder, labels).rank(vectors, top_k=1)
    hits = 0
    click.echo(f"\nzero-shot over {len(labels)} labels:")
    for photo, (best,) in zip(photos, ranked):
        hit = best.label == photo.label
        hits += hit
        mark = "ok " if hit else "-- "
        click.echo(f"  {mark}{photo.path.name:<24} {best.label:<20} {best.score:6.1%}")
    click.echo(f"  {hits}/{len(photos)} correct")

    queries = ["a cat", "बिल्ली की फोटो", "a cup of coffee", "कॉफ़ी का कप", "a rocket launch"]
    click.echo("\nsearch:")
    scores = encoder.embed_texts(queries) @ vectors.T
    for query, row in zip(queries, scores):
        best = int(np.argmax(row))
        click.echo(f"  {query:<20} -> {photos[best].path.name:<24} {row[best]:.3f}")
