"""Hybrid search: vector similarity fused with full-text matches on the items' own text.

A query runs both ways: the nearest vectors, and the items whose captions, embedded descriptions,
file names, OCR text or bodies match its words or substrings (xmodal.fulltext). Every candidate
gets an exact cosine from its stored vector, so an item found only by its text is still ranked
on both. Fusion is reciprocal rank (the default: robust to the two scores' different scales) or
a weighted sum of the cosine and the normalised text score.

Spec strings, as the CLI and the server take them: "rrf", "rrf:k=60,text=1,vector=1",
"weighted:text=0.3,vector=0.7".
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from xmodal.catalog import Catalog
from xmodal.engine.dedup import SearchHit
from xmodal.errors import InvalidInputError
from xmodal.filters import Filter

VECTOR, TEXT, HYBRID = "vector", "text", "hybrid"
MODES = (VECTOR, TEXT, HYBRID)
# Candidates taken from each side, as a multiple of k: enough for the other side to reorder.
_WIDEN = 4
_MIN_CANDIDATES = 50


@dataclass(frozen=True)
class Fusion:
    method: str = "rrf"  # "rrf" or "weighted"
    vector: float = 1.0  # weight of the vector side
    text: float = 1.0  # weight of the text side
    k: int = 60  # the RRF constant: larger flattens the bonus of the very top ranks

    def __post_init__(self):
        if self.method not in ("rrf", "weighted"):
            raise InvalidInputError(f"fusion must be rrf or weighted, not {self.method!r}")
        for name in ("vector", "text"):
            w = getattr(self, name)
            if not (np.isfinite(w) and 0 <= w <= 100):
                raise InvalidInputError(f"fusion weight {name} must be in [0, 100], got {w}")
        if self.vector == 0 and self.text == 0:
            raise InvalidInputError("fusion weights cannot both be 0")
        if not 1 <= self.k <= 10_000:
            raise InvalidInputError(f"fusion k must be in [1, 10000], got {self.k}")


DEFAULT_FUSION = Fusion()


def parse_fusion(spec: str | Fusion | None) -> Fusion:
    """'rrf', 'rrf:k=30', 'weighted:text=0.3,vector=0.7' -> Fusion; None -> the default."""
    if spec is None:
        return DEFAULT_FUSION
    if isinstance(spec, Fusion):
        return spec
    method, _, rest = spec.strip().partition(":")
    values: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, raw = part.partition("=")
        if not eq or key.strip() not in ("vector", "text", "k"):
            raise InvalidInputError(f"fusion option {part!r}: use vector=W, text=W or k=N")
        try:
            values[key.strip()] = float(raw)
        except ValueError:
            raise InvalidInputError(f"fusion option {part!r}: not a number") from None
    if "k" in values:
        if values["k"] != int(values["k"]):
            raise InvalidInputError(f"fusion k must be a whole number, got {values['k']}")
        values["k"] = int(values["k"])
    if method == "weighted":
        values.setdefault("vector", 0.7)
        values.setdefault("text", 0.3)
    return Fusion(method or "rrf", **values)


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise InvalidInputError(f"search mode must be one of {', '.join(MODES)}, not {mode!r}")
    return mode


def search(
    catalog: Catalog,
    nearest: Callable[[np.ndarray, int], list[SearchHit]],
    query: str,
    vector: np.ndarray | None,
    k: int,
    *,
    mode: str,
    where: Filter | None,
    include_flagged: bool,
    threshold: float | None,
    fusion: Fusion,
) -> list[SearchHit]:
    """The k best items for `query` (text) whose embedding is `vector` (None in text mode).

    nearest(vector, n): the n nearest items by vector, with the same filters applied.
    """
    n = max(k * _WIDEN, _MIN_CANDIDATES)
    matched = catalog.match_text(query, n if mode == HYBRID else k, where, include_flagged)
    if mode == TEXT:
        paths = catalog.paths([i for i, _ in matched])
        return [
            SearchHit(i, os.fsdecode(paths[i]), s, text_score=s) for i, s in matched if i in paths
        ]
    cosines = {h.id: h.score for h in nearest(vector, n)}
    missing = [i for i, _ in matched if i not in cosines]
    if missing:  # found by text only: its cosine from the stored vector, exactly
        ids, vectors = catalog.vectors(missing)
        cosines.update(zip(ids.tolist(), (vectors @ vector).tolist()))
    text_scores = dict(matched)
    fused = _fuse(cosines, matched, fusion)
    keep = [
        i
        for i in sorted(fused, key=lambda i: (-fused[i], i))
        if threshold is None or cosines.get(i, -1.0) >= threshold or i in text_scores
    ][:k]
    paths = catalog.paths(keep)
    return [
        SearchHit(i, os.fsdecode(paths[i]), fused[i], cosines.get(i), text_scores.get(i))
        for i in keep
        if i in paths
    ]


def _fuse(
    cosines: dict[int, float], matched: list[tuple[int, float]], fusion: Fusion
) -> dict[int, float]:
    by_vector = sorted(cosines, key=lambda i: (-cosines[i], i))
    if fusion.method == "rrf":
        fused = {i: fusion.vector / (fusion.k + rank + 1) for rank, i in enumerate(by_vector)}
        for rank, (i, _) in enumerate(matched):
            fused[i] = fused.get(i, 0.0) + fusion.text / (fusion.k + rank + 1)
        return fused
    top = max((s for _, s in matched), default=0.0) or 1.0
    fused = {i: fusion.vector * c for i, c in cosines.items()}
    for i, s in matched:
        fused[i] = fused.get(i, 0.0) + fusion.text * s / top
    return fused
