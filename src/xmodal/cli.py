"""The `xmodal` command line. The only module (with the server) that prints or exits."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import click
import numpy as np

from xmodal.errors import ImageLoadError, MissingExtraError, XmodalError

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
    """Texts and images in one vector space: index and search photos, classify, embed; offline."""


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


def _db_option(f):
    return click.option(
        "--db", default=None, help="collection folder (default: $XMODAL_DB or the user data dir)"
    )(f)


def _parse_size(text: str | None) -> int | None:
    """'512M', '2G', '1500000' -> bytes."""
    if not text:
        return None
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    text = text.strip().upper().removesuffix("B")
    try:
        if text and text[-1] in units:
            return int(float(text[:-1]) * units[text[-1]])
        return int(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a size like 512M or 2G") from None


def _index_spec(ctx, param, value: str | None) -> str | None:
    from xmodal.index import parse_index_spec

    if value is None:
        return None
    try:
        parse_index_spec(value)
    except XmodalError as e:
        raise click.BadParameter(str(e)) from None
    return value


@main.command("index")
@click.argument("paths", nargs=-1)
@_db_option
@_model_option
@click.option(
    "--index",
    "index_kind",
    default=None,
    callback=_index_spec,
    help="ANN index: auto (picked from the collection size and --max-memory), flat, hnsw, ivf "
    "or ivf-pq, optionally with parameters, e.g. ivf:nlist=4096,nprobe=24. Kept for later "
    "runs. Default: the collection's last choice, else auto",
)
@click.option("--max-memory", default=None, help="memory budget for the index, e.g. 2G")
@click.option("--follow-symlinks", is_flag=True, help="follow links that leave the folders")
@_batch_option
def index_cmd(paths, db, model_name, index_kind, max_memory, follow_symlinks, batch_size) -> None:
    """Index images under PATHS (folders or files); re-runs embed only what changed.

    With no PATHS, the folders indexed before are scanned again.
    """
    from xmodal.engine.collection import Collection
    from xmodal.scan import display_path

    with Collection.open(db, model_name) as collection:
        report = collection.index(
            list(paths),
            progress=True,
            follow_symlinks=follow_symlinks,
            index_kind=index_kind,
            max_memory_bytes=_parse_size(max_memory),
            batch_size=batch_size,
        )
        for path, reason in report.skipped:
            _warn(f"skipping {display_path(path)}: {reason}")
        click.echo(
            f"added {report.added}, updated {report.updated}, moved {report.moved}, "
            f"removed {report.removed}, unchanged {report.unchanged}, "
            f"skipped {len(report.skipped)}; {collection.count()} items in "
            f"{collection.db_path} ({report.seconds:.1f} s, "
            f"{report.images_per_second:.1f} images/s)"
        )


def _query_terms(query, images, negatives, negative_images):
    from xmodal.engine.query import IMAGE, TEXT, QueryTerm, split_weight

    terms = []
    for kind, values, sign in (
        (TEXT, [query] if query else [], 1),
        (TEXT, negatives, -1),
        (IMAGE, images, 1),
        (IMAGE, negative_images, -1),
    ):
        for raw in values:
            value, weight = split_weight(raw)
            terms.append(QueryTerm(kind, value, sign * abs(weight)))
    return terms


def _hits_json(query: str, hits) -> str:
    from xmodal.scan import display_path

    results = [{"id": h.id, "path": display_path(h.path), "score": round(h.score, 6)} for h in hits]
    return json.dumps({"query": query, "results": results}, ensure_ascii=False)


def _parse_where(pairs: Sequence[str]) -> dict | None:
    where = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--where")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        where[key] = value if isinstance(value, (int, float, bool)) else raw
    return where or None


@main.command("search")
@click.argument("query", required=False)
@click.option("--image", "-i", "images", multiple=True, help="more like this image (PATH[^W])")
@click.option("--not", "negatives", multiple=True, help="less like this text (TEXT[^W])")
@click.option("--not-image", "negative_images", multiple=True, help="less like this image")
@click.option("-k", "k", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--threshold", type=float, default=None, help="only results scoring at least this")
@click.option(
    "--where",
    multiple=True,
    metavar="KEY=VALUE",
    help="only items whose metadata has KEY equal to VALUE (a JSON number/boolean, else text)",
)
@click.option(
    "--queries",
    type=click.File("r", encoding="utf-8"),
    default=None,
    help="one text query per line; prints JSON Lines in order",
)
@click.option("--json", "as_json", is_flag=True)
@_db_option
@_model_option
def search_cmd(
    query, images, negatives, negative_images, k, threshold, where, queries, as_json, db, model_name
) -> None:
    """Search the collection with a text QUERY, images, or a weighted mix of both.

    A term may end in ^WEIGHT: xmodal search "beach^2" --image me.jpg --not "people^0.5"
    """
    from xmodal.engine.collection import Collection
    from xmodal.engine.query import query_vector
    from xmodal.scan import display_path

    filters = _parse_where(where)
    with Collection.open(db, model_name, create=False) as collection:
        if queries is not None:
            texts = [line.strip() for line in queries if line.strip()]
            vectors = collection.encoder.embed_texts(texts) if texts else []
            all_hits = collection.search_vectors(vectors, k, threshold, filters) if texts else []
            for text, hits in zip(texts, all_hits):
                click.echo(_hits_json(text, hits))
            return
        terms = _query_terms(query, images, negatives, negative_images)
        if not terms:
            raise click.UsageError("give a text QUERY, --image, or --queries FILE")
        if collection.count() == 0:
            hits = []
        else:
            vector = query_vector(collection.encoder, terms)
            hits = collection.search_vectors(vector, k, threshold, filters)[0]
        label = query or " ".join(t.describe() for t in terms)
        if as_json:
            click.echo(_hits_json(label, hits))
            return
        if not hits:
            click.echo("no results")
        for rank, hit in enumerate(hits, 1):
            click.echo(f"{rank:>3}  {hit.score:.4f}  {display_path(hit.path)}")


@main.command("dedup")
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1),
    default=0.95,
    show_default=True,
    help="cosine similarity above which two images are near-duplicates",
)
@click.option("--json", "as_json", is_flag=True, help="one JSON object per group")
@_db_option
@_model_option
def dedup_cmd(threshold, as_json, db, model_name) -> None:
    """Groups of near-duplicate images, each member with its similarity to the first."""
    from xmodal.engine.collection import Collection
    from xmodal.scan import display_path

    with Collection.open(db, model_name, create=False) as collection:
        groups = collection.near_duplicates(threshold)
    for group in groups:
        if as_json:
            members = [
                {"path": display_path(m.path), "similarity": round(m.score, 6)}
                for m in group.members
            ]
            record = {"first": display_path(group.first.path), "members": members}
            click.echo(json.dumps(record, ensure_ascii=False))
            continue
        click.echo(display_path(group.first.path))
        for m in group.members:
            click.echo(f"  {m.score:.4f}  {display_path(m.path)}")
    if not as_json:
        click.echo(f"{len(groups)} group(s) at threshold {threshold}")


# Skipped entries listed one by one before the rest are only counted.
_SHOWN_SKIPS = 20

# (row name, path into one model's metrics, format: "%" = percentage, else a format spec)
_EVAL_ROWS = [
    *(
        (f"{arrow} recall@{k}", ("retrieval", direction, f"recall@{k}"), "%")
        for direction, arrow in (("text_to_image", "text→image"), ("image_to_text", "image→text"))
        for k in (1, 5, 10)
    ),
    ("text→image mean rank", ("retrieval", "text_to_image", "mean_rank"), ".2f"),
    ("image→text mean rank", ("retrieval", "image_to_text", "mean_rank"), ".2f"),
    ("zero-shot top-1", ("zero_shot", "top1_accuracy"), "%"),
    ("zero-shot top-5", ("zero_shot", "top5_accuracy"), "%"),
    ("zero-shot mean class recall", ("zero_shot", "mean_per_class_recall"), "%"),
    ("alignment (lower is better)", ("quality", "alignment"), ".4f"),
    ("uniformity image", ("quality", "uniformity_image"), ".4f"),
    ("uniformity text", ("quality", "uniformity_text"), ".4f"),
    ("mean distance image", ("quality", "mean_distance_image"), ".4f"),
    ("mean distance text", ("quality", "mean_distance_text"), ".4f"),
    ("k-means silhouette image", ("quality", "silhouette_image"), ".4f"),
    ("k-means silhouette text", ("quality", "silhouette_text"), ".4f"),
    ("label silhouette image", ("quality", "label_silhouette_image"), ".4f"),
    ("matched cosine", ("quality", "similarity", "matched_mean"), ".4f"),
    ("unmatched cosine", ("quality", "similarity", "unmatched_mean"), ".4f"),
    ("cosine gap", ("quality", "similarity", "gap"), ".4f"),
    ("suggested threshold", ("quality", "suggested_threshold", "threshold"), ".4f"),
    ("  precision at threshold", ("quality", "suggested_threshold", "precision"), "%"),
    ("  recall at threshold", ("quality", "suggested_threshold", "recall"), "%"),
]


def _eval_table(document: dict) -> str:
    """One column per model, one row per metric; rows no model has (zero-shot on captions) go."""
    models = document["models"]

    def cell(metrics: dict, path: tuple[str, ...], fmt: str) -> str | None:
        value = metrics
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is None:
            return None
        return f"{value:.1%}" if fmt == "%" else format(value, fmt)

    d = document["dataset"]
    lines = [
        f"{d['source']} ({d['kind']}): {d['pairs']} pairs, {d['images']} images, "
        f"{d['captions']} captions, {d['skipped']} skipped",
        "",
    ]
    width = max(12, *(len(name) + 2 for name in models))
    lines.append(f"{'METRIC':<28}" + "".join(f"{name:>{width}}" for name in models))
    for label, path, fmt in _EVAL_ROWS:
        cells = [cell(m, path, fmt) for m in models.values()]
        if any(c is not None for c in cells):
            lines.append(f"{label:<28}" + "".join(f"{c or '-':>{width}}" for c in cells))
    return "\n".join(lines)


@main.command("eval")
@click.argument("pairs")
@click.option(
    "--model",
    "-m",
    "model_names",
    multiple=True,
    help=f"{MODEL_HELP}; repeat to compare models side by side",
)
@click.option("--report", "report_dir", default=None, help="write metrics.json and PNG plots here")
@click.option(
    "--template",
    "-t",
    "templates",
    multiple=True,
    help="zero-shot prompt template with {} (repeatable). Default: the model's own",
)
@click.option("--json", "as_json", is_flag=True, help="print the metrics as one JSON object")
@_batch_option
def eval_cmd(pairs, model_names, report_dir, templates, as_json, batch_size) -> None:
    """Evaluate models on the image-caption set PAIRS: retrieval recall@k both ways, zero-shot
    accuracy (label folders), embedding quality and a suggested search threshold.

    PAIRS is a CSV or JSONL file (image and caption columns; relative paths from its folder),
    a folder of images with same-name .txt captions, or a folder of label folders.
    """
    from xmodal.evaluate import dataset_summary, embed_pairs, evaluate_embedded, write_report
    from xmodal.pairs import load_pairs

    pairset = load_pairs(pairs)
    for ref, reason in pairset.skipped[:_SHOWN_SKIPS]:
        _warn(f"skipping {ref}: {reason}")
    if len(pairset.skipped) > _SHOWN_SKIPS:
        _warn(f"... and {len(pairset.skipped) - _SHOWN_SKIPS} more skipped")
    document: dict = {"dataset": dataset_summary(pairset), "models": {}}
    embedded = []
    seen: set[str] = set()
    for name in dict.fromkeys(model_names or [None]):
        encoder = _load_encoder(name, batch_size)
        if encoder.name in seen:
            continue
        seen.add(encoder.name)
        emb = embed_pairs(encoder, pairset, progress=True)
        # Tables and plots show a model as the user named it (a trained folder's full path
        # is the encoder's name, too long for a legend).
        emb.model = name or encoder.name
        if not embedded:  # the same files fail for every model: say it once
            for ref, reason in emb.skipped:
                _warn(f"skipping {ref}: {reason}")
        document["models"][emb.model] = evaluate_embedded(encoder, emb, templates=templates or None)
        embedded.append(emb)
    if report_dir:
        written = write_report(report_dir, document, embedded)
        _warn(f"wrote {', '.join(p.name for p in written)} to {report_dir}")
    if as_json:
        click.echo(json.dumps(document, ensure_ascii=False))
    else:
        click.echo(_eval_table(document))


@main.command("serve")
@_db_option
@_model_option
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
def serve_cmd(db, model_name, host, port) -> None:
    """Serve the collection over HTTP: JSON API (docs at /docs) and a search page at /.

    Listening beyond this machine (a --host that is not loopback) needs XMODAL_API_KEY,
    which every write endpoint then requires.
    """
    try:
        import uvicorn

        from xmodal.server import check_bind, create_app, get_server_settings
    except ImportError as e:
        raise MissingExtraError("xmodal serve", "server", e.name or "fastapi") from None
    base = get_server_settings()
    settings = base.with_(
        db=Path(db).expanduser() if db else base.db,
        model=model_name or base.model,
        host=host,
        port=port,
    )
    check_bind(settings.host, settings.api_key)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")


@main.command("demo")
@click.option(
    "--dir",
    "folder",
    default="xmodal-demo",
    show_default=True,
    help="where the sample photos and their collection are written",
)
@_model_option
def demo_cmd(folder, model_name) -> None:
    """Index 14 real sample photos, search them in English and Hindi, and classify them."""
    from xmodal.engine.collection import Collection
    from xmodal.engine.zeroshot import ZeroShotClassifier
    from xmodal.samples import DISTRACTOR_LABELS, sample_photos

    root = Path(folder)
    photos = sample_photos(root / "photos")
    with Collection.open(root / "db", model_name) as collection:
        report = collection.index([root / "photos"], progress=True)
        click.echo(
            f"indexed {root / 'photos'}: {report.added} added, {report.unchanged} unchanged, "
            f"{collection.count()} items, model {collection.model_name}"
        )
        click.echo("\nsearch (best match):")
        for query in ["a cat", "बिल्ली की फोटो", "a cup of coffee", "कॉफ़ी का कप", "a rocket"]:
            best = collection.search_text(query, k=1)[0]
            click.echo(f"  {query:<20} -> {Path(best.path).name:<24} {best.score:.3f}")
        encoder = collection.encoder

    labels = [p.label for p in photos] + list(DISTRACTOR_LABELS)
    vectors = encoder.embed_images([p.path for p in photos])
    ranked = ZeroShotClassifier(encoder, labels).rank(vectors, top_k=1)
    click.echo(f"\nzero-shot over {len(labels)} labels:")
    hits = 0
    for photo, (best,) in zip(photos, ranked):
        hit = best.label == photo.label
        hits += hit
        click.echo(
            f"  {'ok' if hit else '--'} {photo.path.name:<24} {best.label:<20} {best.score:6.1%}"
        )
    click.echo(f"  {hits}/{len(photos)} correct")
    click.echo(f'\nnext: xmodal search --db {root / "db"} "a photo of a horse"')


def _recalls(metrics: dict, direction: str = "text_to_image") -> str:
    d = metrics[direction]
    return "/".join(f"{d[k]:.1%}" for k in d if k.startswith("recall@"))


@main.command("train")
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
@click.option("--device", default=None, help="cpu or cuda (default: cuda when there is one)")
@click.option("--resume", is_flag=True, help="continue the run checkpointed in --out")
def train_cmd(pairs, base, out, mode, blocks, tower, device, resume, **hyperparameters) -> None:
    """Fine-tune a model on the image-caption pairs PAIRS (a CSV/JSONL file or a folder, as for
    `xmodal eval`); the result loads anywhere with --model OUT.

    Validation recall is measured on held-out captions before training and after every epoch;
    the best epoch's weights are saved. Re-run the same command with --resume to continue a
    stopped run.
    """
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
        pairs, base, out, config, resume=resume, device=device, progress=True, on_epoch=on_epoch
    )
    for ref, reason in result.skipped[:_SHOWN_SKIPS]:
        _warn(f"skipping {ref}: {reason}")
    if len(result.skipped) > _SHOWN_SKIPS:
        _warn(f"... and {len(result.skipped) - _SHOWN_SKIPS} more skipped")
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
