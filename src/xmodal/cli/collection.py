"""Commands on a collection: index, search, dedup, and the demo that builds one."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import click

from xmodal.cli.common import batch_option, db_option, device_option, model_option, warn
from xmodal.cli.shards import engine_options
from xmodal.errors import XmodalError


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


@click.command("index")
@click.argument("paths", nargs=-1)
@db_option
@model_option
@device_option(expose=False)
@click.option(
    "--index",
    "index_kind",
    default=None,
    callback=_index_spec,
    help="ANN index: auto (picked from the collection size and --max-memory), flat, hnsw, ivf "
    "or ivf-pq, optionally with parameters, e.g. ivf:nlist=4096,nprobe=24; or milvus (see "
    "--milvus-uri; milvus:index=hnsw). Kept for later runs. Default: the collection's last "
    "choice, else auto",
)
@click.option(
    "--milvus-uri",
    default=None,
    help="with --index milvus: a milvus-lite file (./vectors.db) or a server "
    "(http://HOST:19530, token in XMODAL_MILVUS_TOKEN). Default: XMODAL_MILVUS_URI",
)
@click.option("--max-memory", default=None, help="memory budget for the index, e.g. 2G")
@click.option("--follow-symlinks", is_flag=True, help="follow links that leave the folders")
@click.option(
    "--wait",
    is_flag=True,
    help="when another process is writing the collection, wait for it instead of exiting 75",
)
@click.option(
    "--ocr",
    is_flag=True,
    help="also read the words printed on images (once per image; searchable by text)",
)
@click.option(
    "--moderate",
    is_flag=True,
    help="also judge images against moderation categories; flagged ones are hidden from "
    "searches unless --include-flagged",
)
@click.option(
    "--categories",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="with --moderate: a category file (TOML/YAML); default: the built-in categories",
)
@batch_option
@engine_options
def index_cmd(
    paths,
    db,
    model_name,
    index_kind,
    milvus_uri,
    max_memory,
    follow_symlinks,
    wait,
    ocr,
    moderate,
    categories,
    batch_size,
    engine,
):
    """Index images, text files (.txt, .md), sounds (WAV, FLAC, OGG, MP3, M4A...; when the
    model hears) and videos (as segments) under PATHS (folders or files); re-runs embed only
    what changed.

    Captions come with them: sidecar files (NAME.txt, NAME.json beside NAME.jpg), descriptions
    embedded in the image (EXIF, XMP, IPTC) and the file name; --ocr adds printed words.
    With no PATHS, the folders indexed before are scanned again. One process indexes a
    collection at a time: another one exits with code 75, or waits its turn with --wait.
    """
    from xmodal.engine.collection import Collection
    from xmodal.scan import display_path

    def on_wait() -> None:
        warn("waiting for another process that is writing the collection ...")

    if milvus_uri:
        from xmodal.index.milvus import milvus_spec

        try:
            index_kind = milvus_spec(index_kind, milvus_uri)
        except XmodalError as e:
            raise click.BadParameter(str(e), param_hint="--milvus-uri") from None

    if categories and not moderate:
        raise click.UsageError("--categories goes with --moderate")
    with Collection.open(db, model_name) as collection:
        moderator = None
        if moderate:
            from xmodal.moderation import Moderator, load_policy

            moderator = Moderator(collection.encoder, load_policy(categories))
        report = collection.index(
            list(paths),
            progress=True,
            follow_symlinks=follow_symlinks,
            index_kind=index_kind,
            max_memory_bytes=_parse_size(max_memory),
            batch_size=batch_size,
            wait=wait,
            on_wait=on_wait,
            reader=engine and engine.reader(collection.model_name, batch_size),
            ocr=ocr,
            moderation=moderator,
        )
        for path, reason in report.skipped:
            warn(f"skipping {display_path(path)}: {reason}")
        click.echo(
            f"added {report.added}, updated {report.updated}, moved {report.moved}, "
            f"removed {report.removed}, unchanged {report.unchanged}, "
            f"skipped {len(report.skipped)}; {collection.count()} items in "
            f"{collection.db_path} ({report.seconds:.1f} s, "
            f"{report.images_per_second:.1f} images/s)"
        )
        if report.recaptioned:
            click.echo(f"{report.recaptioned} caption(s) read again from edited sidecar files")
        if ocr:
            click.echo(f"read printed words on {report.ocr_read} new image(s)")
        if moderate:
            click.echo(f"judged {report.moderated} image(s) against moderation categories")


def _query_terms(query, images, negatives, negative_images, sounds=(), negative_sounds=()):
    from xmodal.engine.query import AUDIO, IMAGE, TEXT, QueryTerm, split_weight

    terms = []
    for kind, values, sign in (
        (TEXT, [query] if query else [], 1),
        (TEXT, negatives, -1),
        (IMAGE, images, 1),
        (IMAGE, negative_images, -1),
        (AUDIO, sounds, 1),
        (AUDIO, negative_sounds, -1),
    ):
        for raw in values:
            value, weight = split_weight(raw)
            terms.append(QueryTerm(kind, value, sign * abs(weight)))
    return terms


def _hit_record(hit) -> dict:
    from xmodal.scan import display_path

    record = {"id": hit.id, "path": display_path(hit.path), "score": round(hit.score, 6)}
    for name in ("vector_score", "text_score", "start", "end"):
        value = getattr(hit, name)
        if value is not None:
            record[name] = round(value, 6)
    return record


def _hits_json(query: str, hits) -> str:
    results = [_hit_record(h) for h in hits]
    return json.dumps({"query": query, "results": results}, ensure_ascii=False)


def _fusion(ctx, param, value: str | None):
    from xmodal.engine.hybrid import parse_fusion

    try:
        return parse_fusion(value)
    except XmodalError as e:
        raise click.BadParameter(str(e)) from None


def _parse_where(terms: Sequence[str]):
    """--where terms as a Filter, checked before the collection opens (InvalidInputError)."""
    from xmodal.filters import parse_filter, parse_terms

    return parse_filter(parse_terms(terms))


@click.command("search")
@click.argument("query", required=False)
@click.option("--image", "-i", "images", multiple=True, help="more like this image (PATH[^W])")
@click.option("--not", "negatives", multiple=True, help="less like this text (TEXT[^W])")
@click.option("--not-image", "negative_images", multiple=True, help="less like this image")
@click.option(
    "--audio", "-a", "sounds", multiple=True, help="more like this sound (PATH[^W]: WAV, MP3...)"
)
@click.option("--not-audio", "negative_sounds", multiple=True, help="less like this sound")
@click.option("-k", "k", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--threshold", type=float, default=None, help="only results scoring at least this")
@click.option(
    "--where",
    multiple=True,
    metavar="FILTER",
    help="only items where FILTER holds (repeat: all must): KEY=VALUE on metadata (VALUE a JSON "
    "number/boolean, else text), KEY>V, KEY>=V, KEY<V, KEY<=V on metadata or on size (bytes), "
    "width, height, mtime (epoch seconds or a UTC date like 2024-01-01); path^=PREFIX (a "
    "relative one is taken from the current folder); metadata.size=V for a metadata key named "
    "like a built-in field",
)
@click.option(
    "--queries",
    type=click.File("r", encoding="utf-8"),
    default=None,
    help="one text query per line; prints JSON Lines in order",
)
@click.option(
    "--mode",
    type=click.Choice(["vector", "text", "hybrid"]),
    default=None,
    help="vector similarity, full text (captions, embedded descriptions, OCR, file names, text "
    "items), or both fused. Default: hybrid when the collection has text, else vector",
)
@click.option(
    "--fusion",
    default=None,
    callback=_fusion,
    help="how hybrid mode fuses: rrf (reciprocal rank, default), rrf:k=60,text=1,vector=1, or "
    "weighted:text=0.3,vector=0.7 (cosine plus normalised text score)",
)
@click.option(
    "--type",
    "item_type",
    type=click.Choice(["image", "text", "audio", "video"]),
    default=None,
    help="only items of this type (video: segments of videos)",
)
@click.option("--include-flagged", is_flag=True, help="also show items that moderation flagged")
@click.option("--json", "as_json", is_flag=True)
@db_option
@model_option
@device_option(expose=False)
def search_cmd(
    query,
    images,
    negatives,
    negative_images,
    sounds,
    negative_sounds,
    k,
    threshold,
    where,
    queries,
    mode,
    fusion,
    item_type,
    include_flagged,
    as_json,
    db,
    model_name,
) -> None:
    """Search the collection with a text QUERY, images, sounds, or a weighted mix.

    A term may end in ^WEIGHT: xmodal search "beach^2" --image me.jpg --not "people^0.5"
    By sound: xmodal search --audio bark.wav --type image

    Filters: xmodal search "sunset" --where album=trip --where "size>100000"
    --where "mtime>=2024-01-01" --where path^=/photos/2024/

    A text QUERY also matches the items' own text (hybrid search), so words printed on an
    image or written in its caption find it: xmodal search "KA 01 AB" --mode text
    """
    from xmodal.engine.collection import Collection
    from xmodal.engine.query import query_vector, split_weight
    from xmodal.scan import display_path

    terms_where = list(where) + ([f"type={item_type}"] if item_type else [])
    filters = _parse_where(terms_where)
    options = dict(
        mode=mode,
        threshold=threshold,
        where=filters,
        include_flagged=include_flagged,
        fusion=fusion,
    )
    with Collection.open(db, model_name, create=False) as collection:
        if queries is not None:
            texts = [line.strip() for line in queries if line.strip()]
            vectors = collection.encoder.embed_texts(texts) if texts and mode != "text" else None
            for i, text in enumerate(texts):
                vector = None if vectors is None else vectors[i]
                hits = collection.search(text, k, vector=vector, **options)
                click.echo(_hits_json(text, hits))
            return
        terms = _query_terms(query, images, negatives, negative_images, sounds, negative_sounds)
        if not terms:
            raise click.UsageError("give a text QUERY, --image, --audio, or --queries FILE")
        if mode == "text" and (not query or len(terms) > 1):
            raise click.UsageError(
                "--mode text takes a text QUERY alone (no images, sounds or --not)"
            )
        if collection.count() == 0:
            hits = []
        elif query:
            vector = None if mode == "text" else query_vector(collection.encoder, terms)
            hits = collection.search(split_weight(query)[0], k, vector=vector, **options)
        else:
            vector = query_vector(collection.encoder, terms)
            hits = collection.search_vectors(vector, k, threshold, filters, include_flagged)[0]
        label = query or " ".join(t.describe() for t in terms)
        if as_json:
            click.echo(_hits_json(label, hits))
            return
        if not hits:
            click.echo("no results")
        for rank, hit in enumerate(hits, 1):
            span = "" if hit.start is None else f"  [{_clock(hit.start)}-{_clock(hit.end)}]"
            click.echo(f"{rank:>3}  {hit.score:.4f}  {display_path(hit.path)}{span}")


def _clock(seconds: float) -> str:
    """12.5 -> '0:12.5', 3725 -> '1:02:05.0'."""
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{secs:04.1f}" if hours else f"{minutes}:{secs:04.1f}"


@click.command("dedup")
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1),
    default=0.95,
    show_default=True,
    help="cosine similarity above which two images are near-duplicates",
)
@click.option("--json", "as_json", is_flag=True, help="one JSON object per group")
@db_option
@model_option
def dedup_cmd(threshold, as_json, db, model_name) -> None:
    """Groups of near-duplicate images, each member with its similarity to the first.

    Compares the stored vectors: no model runs, so there is no --device.
    """
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


@click.command("demo")
@click.option(
    "--dir",
    "folder",
    default="xmodal-demo",
    show_default=True,
    help="where the sample photos and their collection are written",
)
@model_option
@device_option(expose=False)
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
