"""Searching a collection: by vector, by text (vector, full text or both fused), by image,
and near-duplicates. A part of Collection (engine/collection.py), apart for its size."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from xmodal.audio import AudioSource
from xmodal.engine import hybrid
from xmodal.engine.dedup import DuplicateGroup, SearchHit, near_duplicates
from xmodal.errors import InvalidInputError
from xmodal.filters import Filter, parse_filter
from xmodal.images import ImageSource


class Searching:
    """What Collection searches with: its catalog, its ANN state and its encoder."""

    def search(
        self,
        text: str,
        k: int = 10,
        *,
        mode: str | None = None,
        threshold: float | None = None,
        where: Filter | dict[str, Any] | None = None,
        include_flagged: bool = False,
        fusion: str | hybrid.Fusion | None = None,
        vector: np.ndarray | None = None,
    ) -> list[SearchHit]:
        """The k best items for a text query, by vector, by full text, or both fused.

        mode: "vector", "text" or "hybrid"; None: hybrid when any item has text (captions,
        embedded descriptions, OCR, text items), else vector. fusion: see engine/hybrid.py.
        vector: the query's embedding when the caller has it (a weighted mix of terms);
        default: the text embedded. Hybrid hits carry vector_score and text_score.
        """
        if not text.strip():
            raise InvalidInputError("empty query: give at least one non-blank character")
        mode = (
            hybrid.check_mode(mode)
            if mode
            else (hybrid.HYBRID if self.has_text() else hybrid.VECTOR)
        )
        fused = hybrid.parse_fusion(fusion)
        if self.count() == 0:
            return []
        if mode != hybrid.TEXT and vector is None:
            vector = self.encoder.embed_texts([text])[0]
        if mode == hybrid.VECTOR:
            return self.search_vectors(vector, k, threshold, where, include_flagged)[0]
        hits = hybrid.search(
            self._catalog,
            lambda v, n: self.search_vectors(v, n, None, where, include_flagged)[0],
            text,
            vector,
            k,
            mode=mode,
            where=parse_filter(where),
            include_flagged=include_flagged,
            threshold=threshold,
            fusion=fused,
        )
        return self._timed([hits])[0]

    def search_vectors(
        self,
        vectors: np.ndarray,
        k: int = 10,
        threshold: float | None = None,
        where: Filter | dict[str, Any] | None = None,
        include_flagged: bool = False,
    ) -> list[list[SearchHit]]:
        """The k best items for each query vector (L2-normalised, [n, dim] or [dim]), best
        first; with a threshold, only those scoring at least that; with `where`, only items
        matching it: metadata, size, width, height, mtime, path prefix and type (image or
        text; the language is in xmodal.filters). A filter still returns k hits when k items
        match it. Items a stored moderation verdict flagged are left out unless
        include_flagged."""
        vectors = np.asarray(vectors, dtype=np.float32)
        n = 1 if vectors.ndim == 1 else len(vectors)
        allowed = self._allowed(where, include_flagged)
        if self.count() == 0 or (allowed is not None and allowed.size == 0):
            return [[] for _ in range(n)]
        results = self._ann.current().search(vectors, k, filter=allowed)
        paths = self._catalog.paths(np.concatenate([h.ids for h in results]))
        # An id that another process deleted since the index was brought in step has no path:
        # dropped, it was gone a moment later anyway.
        return self._timed(
            [
                [
                    SearchHit(int(i), os.fsdecode(paths[int(i)]), float(s))
                    for i, s in zip(hits.ids, hits.scores)
                    if int(i) in paths and (threshold is None or s >= threshold)
                ]
                for hits in results
            ]
        )

    def _timed(self, results: list[list[SearchHit]]) -> list[list[SearchHit]]:
        """Video segments among the hits get their time ranges."""
        if not self._catalog.has_segments():
            return results
        spans = self._catalog.spans([h.id for hits in results for h in hits])
        if not spans:
            return results
        return [
            [
                dataclasses.replace(h, start=spans[h.id][0], end=spans[h.id][1])
                if h.id in spans
                else h
                for h in hits
            ]
            for hits in results
        ]

    def _allowed(self, where, include_flagged: bool) -> np.ndarray | None:
        """Ids a search may return (None: any): the filter's, less flagged items."""
        if include_flagged or not self._catalog.any_flagged():
            return None if not where else self._catalog.ids_where(where)
        return self._catalog.ids_where(where, unflagged=True)

    def search_text(
        self,
        text: str,
        k: int = 10,
        threshold: float | None = None,
        where: Filter | dict[str, Any] | None = None,
    ) -> list[SearchHit]:
        """The k nearest items by vector to a text (search() also matches the items' text)."""
        if self.count() == 0:
            return []
        return self.search_vectors(self.encoder.embed_texts([text]), k, threshold, where)[0]

    def search_image(
        self,
        image: ImageSource,
        k: int = 10,
        threshold: float | None = None,
        where: Filter | dict[str, Any] | None = None,
    ) -> list[SearchHit]:
        if self.count() == 0:
            return []
        return self.search_vectors(self.encoder.embed_images([image]), k, threshold, where)[0]

    def search_audio(
        self,
        audio: AudioSource,
        k: int = 10,
        threshold: float | None = None,
        where: Filter | dict[str, Any] | None = None,
    ) -> list[SearchHit]:
        """The k nearest items to a sound (a path, bytes, or (samples, rate))."""
        if self.count() == 0:
            return []
        return self.search_vectors(self.encoder.embed_audio([audio]), k, threshold, where)[0]

    def near_duplicates(self, threshold: float = 0.95) -> list[DuplicateGroup]:
        """Groups of items whose vectors score above threshold with the group's first item.

        Each group's first item is its largest image; groups are disjoint, biggest first.
        Uses the stored vectors and the index's range search; never loads the model.
        """
        if self.count() < 2:
            return []
        return near_duplicates(self._ann.current(), self._catalog, threshold)
