"""Near-duplicates: groups of items whose stored vectors are within a threshold of the group's
first (largest) item, found with the index's range search. Never loads the model."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from xmodal.catalog import Catalog
from xmodal.index import VectorIndex

# Near-duplicate queries per range search: bounds the memory of FAISS's result lists.
_CHUNK = 4096


@dataclass(frozen=True)
class SearchHit:
    id: int
    path: str  # opens the file even when its name is not valid UTF-8 (see scan.display_path)
    score: float  # the cosine; in hybrid search the fused score, with both parts beside it
    vector_score: float | None = None  # hybrid search: the cosine
    text_score: float | None = None  # hybrid and text search: the full-text score
    start: float | None = None  # a video segment's time range in seconds
    end: float | None = None


@dataclass(frozen=True)
class DuplicateGroup:
    first: SearchHit  # the one to keep: the most pixels, then the most bytes (score 1.0)
    members: list[SearchHit]  # the others, with their similarity to `first`, best first


def near_duplicates(ann: VectorIndex, catalog: Catalog, threshold: float) -> list[DuplicateGroup]:
    """Disjoint groups, biggest first; `ann` is in step with `catalog`."""
    ids, vectors = catalog.vectors()
    neighbours: dict[int, Any] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        for item_id, hits in zip(
            chunk, ann.range_search(vectors[start : start + len(chunk)], threshold)
        ):
            if len(hits) > 1:
                neighbours[int(item_id)] = hits
    with catalog.reading():  # sizes and paths of the same items
        sizes = catalog.sizes()
        groups = _groups(neighbours, sizes)
        paths = catalog.paths(
            [i for first, members in groups for i in [first, *(m for m, _ in members)]]
        )

    def hit(item_id: int, score: float) -> SearchHit:
        return SearchHit(item_id, os.fsdecode(paths[item_id]), score)

    result = [
        DuplicateGroup(hit(first, 1.0), [hit(i, s) for i, s in members])
        for first, members in groups
    ]
    result.sort(key=lambda g: (-len(g.members), g.first.path))
    return result


def _groups(neighbours: dict[int, Any], sizes: dict) -> list[tuple[int, list[tuple[int, float]]]]:
    """Disjoint groups, each led by its largest image. Ids missing from `sizes` (deleted by
    another process since the index was brought in step) are left out."""
    taken: set[int] = set()
    groups: list[tuple[int, list[tuple[int, float]]]] = []
    candidates = [i for i in neighbours if i in sizes]
    for first in sorted(candidates, key=lambda i: (-sizes[i][0], -sizes[i][1], i)):
        if first in taken:
            continue
        hits = neighbours[first]
        members = [
            (int(i), float(s))
            for i, s in zip(hits.ids, hits.scores)
            if i != first and int(i) not in taken and int(i) in sizes
        ]
        if members:
            taken.update([first, *(i for i, _ in members)])
            groups.append((first, members))
    return groups
