"""Search the collection: GET for a text (or "more like item N"), POST for weighted mixes with
an uploaded image."""

from __future__ import annotations

import json
import os
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, UploadFile

from xmodal.engine.collection import SearchHit
from xmodal.engine.query import combine
from xmodal.errors import InvalidInputError
from xmodal.filters import parse_filter
from xmodal.server.deps import get_service, read_image_upload, require_form
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


def hit_out(hit: SearchHit, path: str) -> Hit:
    return Hit(
        id=hit.id,
        path=path,
        score=hit.score,
        thumbnail=f"/items/{hit.id}/thumbnail",
        file=f"/items/{hit.id}/file",
    )


async def _run(
    service: Service,
    terms: list[tuple[str, np.ndarray, float]],
    k: int,
    threshold: float | None,
    where: str | None,
) -> SearchResults:
    if not terms:
        raise HTTPException(422, "empty query: give a text, an image, or an item id (like)")
    if all(w < 0 for _, _, w in terms):
        raise HTTPException(422, "a query needs at least one positive term, not only negatives")
    vector = combine(np.stack([v for _, v, _ in terms]), [w for _, _, w in terms])
    filters = parse_where(where)

    def find() -> tuple[list[SearchHit], list[str]]:
        collection = service.collection
        hits = collection.search_vectors(vector, k, threshold, rooted(filters, collection.roots))[0]
        return hits, service.relative_paths([h.path for h in hits])

    hits, paths = await service.locked(find)
    described = " ".join(
        f"{'-' if w < 0 else '+'}{'' if abs(w) == 1 else f'{abs(w):g}*'}{name}"
        for name, _, w in terms
    )
    return SearchResults(query=described, results=[hit_out(h, p) for h, p in zip(hits, paths)])


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
    service: Service = Depends(get_service),
) -> SearchResults:
    """Items matching a text `q`, or like item `like`, or both; best first."""
    terms = []
    if q is not None:
        terms.append((f"text:{q}", (await service.embed_texts([q]))[0], 1.0))
    if like is not None:
        terms.append((f"item:{like}", await _like(service, like), 1.0))
    return await _run(service, terms, k, threshold, where)


@router.post("/search", dependencies=[Depends(require_form)])
async def search_post(
    text: Annotated[str | None, Form(min_length=1, max_length=10_000)] = None,
    text_weight: Weight = 1.0,
    file: Annotated[UploadFile | None, File(description="query image")] = None,
    image_weight: Weight = 1.0,
    negative: Annotated[
        str | None, Form(min_length=1, max_length=10_000, description="less like this text")
    ] = None,
    negative_weight: Weight = 1.0,
    like: Annotated[int | None, Form(ge=0, le=2**63 - 1, description="more like item")] = None,
    k: Annotated[int, Form(ge=1, le=MAX_K)] = 10,
    threshold: Annotated[float | None, Form(ge=-1, le=1)] = None,
    where: Annotated[str | None, Form(max_length=10_000, description=WHERE_HELP)] = None,
    service: Service = Depends(get_service),
) -> SearchResults:
    """A weighted mix: text, uploaded image, an indexed item, and a negative text."""
    texts = [(t, w) for t, w in ((text, text_weight), (negative, -negative_weight)) if t]
    terms = []
    if texts:
        vectors = await service.embed_texts([t for t, _ in texts])
        terms += [(f"text:{t}", v, w) for (t, w), v in zip(texts, vectors)]
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
    return await _run(service, terms, k, threshold, where)
