"""Search the collection: GET for a text (or "more like item N"), POST for weighted mixes with
an uploaded image or sound. Hits of every kind come back: images, texts, sounds and video
segments (with their time range: the file is the whole video)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, UploadFile

from xmodal.catalog import AUDIO_KIND, VIDEO_KIND
from xmodal.engine.collection import SearchHit
from xmodal.engine.hybrid import parse_fusion
from xmodal.engine.query import combine
from xmodal.errors import InvalidInputError
from xmodal.filters import ITEM_TYPES, parse_filter
from xmodal.server.deps import (
    get_service,
    is_sound_upload,
    read_audio_upload,
    read_image_upload,
    require_form,
    require_hearing,
    sound_errors,
)
from xmodal.server.schemas import Hit, SearchResults
from xmodal.server.service import Service

router = APIRouter(tags=["search"])

MAX_K = 1000
ItemId = Annotated[int, Query(ge=0, le=2**63 - 1, description="an item's id: more like it")]
K = Annotated[int, Query(ge=1, le=MAX_K, description="results wanted")]
Threshold = Annotated[float | None, Query(ge=-1, le=1, description="minimum score")]
Weight = Annotated[float, Form(gt=0, le=100)]
WHERE_HELP = (
    'filter, a JSON object whose keys must all hold: {"album": "trip", "year": {">=": 2020}, '
    '"size": {">": 100000}, "width": {">=": 1024}, "mtime": {">=": "2024-01-01"}, '
    '"path": {"prefix": "2024/"}} (a relative prefix is under each indexed root)'
)


def parse_where(raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        where = json.loads(raw)
    except ValueError:
        raise HTTPException(422, f"where: not JSON: {raw[:100]!r}") from None
    if not isinstance(where, dict):
        raise HTTPException(422, "where: must be a JSON object of keys and conditions")
    try:
        parse_filter(where)  # checked before any search runs
    except InvalidInputError as e:
        raise HTTPException(422, f"where: {e}") from None
    return where


def rooted(where: dict[str, Any] | None, roots: list[str]) -> dict[str, Any] | None:
    """A relative path prefix, as paths are shown here, stands for that prefix under each
    indexed root (it matches nothing if there is none)."""
    spec = (where or {}).get("path")
    if not isinstance(spec, dict) or "prefix" not in spec:
        return where
    given = spec["prefix"] if isinstance(spec["prefix"], list) else [spec["prefix"]]
    prefixes = []
    for prefix in given:
        prefixes += [prefix] if os.path.isabs(prefix) else [os.path.join(r, prefix) for r in roots]
    return {**where, "path": {**spec, "prefix": prefixes or given}}


Mode = Annotated[
    Literal["vector", "text", "hybrid"] | None,
    Query(description="vector, full text, or both fused (default: hybrid when items have text)"),
]
FusionSpec = Annotated[
    str | None,
    Query(max_length=200, description="hybrid fusion: rrf, rrf:k=60, weighted:text=0.3"),
]
TypeName = Literal["image", "text", "audio", "video"]
assert set(TypeName.__args__) == set(ITEM_TYPES)  # the filter language's types, all of them
ItemType = Annotated[TypeName | None, Query(description="only this item type")]
_SNIPPET = 300
_SPOKEN = (AUDIO_KIND, VIDEO_KIND)  # kinds whose text body is what they say


@dataclass(frozen=True)
class About:
    """What a hit shows beside its score."""

    kind: str = "image"
    text: str | None = None
    transcript: str | None = None


def hit_out(hit: SearchHit, path: str, about: About = About()) -> Hit:
    return Hit(
        id=hit.id,
        path=path,
        score=hit.score,
        vector_score=hit.vector_score,
        text_score=hit.text_score,
        type=about.kind,
        text=about.text,
        transcript=about.transcript,
        start=hit.start,
        end=hit.end,
        # A sound has no picture; a video segment's is its middle frame.
        thumbnail=None if about.kind == AUDIO_KIND else f"/items/{hit.id}/thumbnail",
        file=f"/items/{hit.id}/file",
    )


@dataclass(frozen=True)
class Options:
    """What every search takes beside its terms."""

    k: int
    threshold: float | None
    where: str | None
    mode: str | None = None
    fusion: str | None = None
    include_flagged: bool = False
    item_type: str | None = None


async def _run(
    service: Service,
    terms: list[tuple[str, np.ndarray | None, float]],
    options: Options,
    text: str | None = None,
) -> SearchResults:
    """Terms (name, vector, weight) fused into one vector; with a positive `text`, the items'
    own text is matched too (hybrid search)."""
    if not terms:
        raise HTTPException(
            422, "empty query: give a text, an image, a sound, or an item id (like)"
        )
    if all(w < 0 for _, _, w in terms):
        raise HTTPException(422, "a query needs at least one positive term, not only negatives")
    if options.mode == "text" and (text is None or len(terms) > 1):
        raise HTTPException(422, "mode=text takes a text alone (no image, sound, item or negative)")
    try:
        fusion = parse_fusion(options.fusion)
    except InvalidInputError as e:
        raise HTTPException(422, f"fusion: {e}") from None
    vector = None
    if options.mode != "text":
        vector = combine(np.stack([v for _, v, _ in terms]), [w for _, _, w in terms])
    filters = parse_where(options.where)
    if options.item_type:
        filters = {**(filters or {}), "type": options.item_type}

    def find() -> tuple[list[SearchHit], list[str], dict]:
        collection = service.collection
        where = rooted(filters, collection.roots)
        if text is not None:
            hits = collection.search(
                text,
                options.k,
                mode=options.mode,
                threshold=options.threshold,
                where=where,
                include_flagged=options.include_flagged,
                fusion=fusion,
                vector=vector,
            )
        else:
            hits = collection.search_vectors(
                vector, options.k, options.threshold, where, options.include_flagged
            )[0]
        kinds = {h.id: collection.get(h.id) for h in hits}
        texts = collection.item_texts([h.id for h in hits])
        about = {i: _about(item, texts.get(i)) for i, item in kinds.items()}
        return hits, service.relative_paths([h.path for h in hits]), about

    hits, paths, about = await service.locked(find)
    described = " ".join(
        f"{'-' if w < 0 else '+'}{'' if abs(w) == 1 else f'{abs(w):g}*'}{name}"
        for name, _, w in terms
    )
    results = [hit_out(h, p, about.get(h.id, About())) for h, p in zip(hits, paths)]
    return SearchResults(query=described, results=results)


def _about(item, text) -> About:
    kind = item.kind if item else "image"
    if kind in _SPOKEN:
        # A sound's body is its transcript, shown apart from its caption.
        spoken = text.body[:_SNIPPET] if text else ""
        shown = (text.caption or text.embedded)[:_SNIPPET] if text else ""
        return About(kind, shown or None, spoken or None)
    return About(kind, _snippet(text))


def _snippet(text) -> str | None:
    """What a hit shows of its text: the caption, else a text item's opening, else OCR."""
    if text is None:
        return None
    shown = text.caption or text.body or text.embedded or text.ocr
    return shown[:_SNIPPET] or None


async def _like(service: Service, item_id: int) -> np.ndarray:
    vector = await service.locked(service.collection.vector, item_id)
    if vector is None:
        raise HTTPException(404, f"no item {item_id}")
    return vector


@router.get("/search")
async def search_get(
    q: Annotated[str | None, Query(min_length=1, max_length=10_000, description="text")] = None,
    like: ItemId | None = None,
    k: K = 10,
    threshold: Threshold = None,
    where: Annotated[str | None, Query(max_length=10_000, description=WHERE_HELP)] = None,
    mode: Mode = None,
    fusion: FusionSpec = None,
    include_flagged: Annotated[bool, Query(description="show items moderation flagged")] = False,
    type: ItemType = None,
    service: Service = Depends(get_service),
) -> SearchResults:
    """Items matching a text `q` (by vector and, in hybrid mode, by their own text), or like
    item `like`, or both; best first."""
    terms = []
    if q is not None:
        if not q.strip():
            raise HTTPException(422, "empty text: give at least one non-blank character")
        vector = None if mode == "text" else (await service.embed_texts([q]))[0]
        terms.append((f"text:{q}", vector, 1.0))
    if like is not None:
        terms.append((f"item:{like}", await _like(service, like), 1.0))
    options = Options(k, threshold, where, mode, fusion, include_flagged, type)
    return await _run(service, terms, options, q)


@router.post("/search", dependencies=[Depends(require_form)])
async def search_post(
    text: Annotated[str | None, Form(min_length=1, max_length=10_000)] = None,
    text_weight: Weight = 1.0,
    file: Annotated[
        UploadFile | None, File(description="query image, or sound (told apart by its bytes)")
    ] = None,
    image_weight: Weight = 1.0,
    audio: Annotated[UploadFile | None, File(description="query sound")] = None,
    audio_weight: Weight = 1.0,
    negative: Annotated[
        str | None, Form(min_length=1, max_length=10_000, description="less like this text")
    ] = None,
    negative_weight: Weight = 1.0,
    like: Annotated[int | None, Form(ge=0, le=2**63 - 1, description="more like item")] = None,
    k: Annotated[int, Form(ge=1, le=MAX_K)] = 10,
    threshold: Annotated[float | None, Form(ge=-1, le=1)] = None,
    where: Annotated[str | None, Form(max_length=10_000, description=WHERE_HELP)] = None,
    mode: Annotated[Literal["vector", "text", "hybrid"] | None, Form()] = None,
    fusion: Annotated[str | None, Form(max_length=200)] = None,
    include_flagged: Annotated[bool, Form()] = False,
    type: Annotated[TypeName | None, Form()] = None,
    service: Service = Depends(get_service),
) -> SearchResults:
    """A weighted mix: text, uploaded image, uploaded sound, an indexed item, and a negative
    text. A sound comes as `audio` (weight audio_weight) or as `file` (image_weight), told
    from an image by its bytes. It needs a model that hears (400 otherwise); one longer than
    XMODAL_MAX_AUDIO_SECONDS is heard from its start, as indexing hears long files."""
    texts = [(t, w) for t, w in ((text, text_weight), (negative, -negative_weight)) if t]
    sounds = [(audio, audio_weight)] if audio is not None else []
    if file is not None and await is_sound_upload(file):
        sounds.insert(0, (file, image_weight))
        file = None
    if sounds:
        require_hearing(service)  # before any text is embedded
    terms = []
    if texts:
        vectors = await service.embed_texts([t for t, _ in texts])
        terms += [(f"text:{t}", v, w) for (t, w), v in zip(texts, vectors)]
    if sounds:
        uploads = [await read_audio_upload(f) for f, _ in sounds]
        with sound_errors():
            vectors = await service.embed_audio(uploads)
        terms += [(f"audio:{u.name}", v, w) for u, v, (_, w) in zip(uploads, vectors, sounds)]
    if file is not None:
        image = await read_image_upload(file)
        terms.append(
            (
                f"image:{file.filename or 'upload'}",
                (await service.embed_images([image]))[0],
                image_weight,
            )
        )
    if like is not None:
        terms.append((f"item:{like}", await _like(service, like), 1.0))
    options = Options(k, threshold, where, mode, fusion, include_flagged, type)
    return await _run(service, terms, options, text)
