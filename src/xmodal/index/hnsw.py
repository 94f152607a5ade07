"""Approximate search on an HNSW graph (IndexHNSWFlat, inner product): fast at millions of ids.

The graph cannot delete nodes, so remove (and replace) marks the node's label dead: searches
skip dead labels through a bitmap selector, and once dead labels exceed `rebuild_fraction` of
the graph it is rebuilt from the live vectors (HNSWFlat keeps the exact vectors, so no caller
input is needed). Filters: a narrow allow-set (see _faiss.exhaustive), or k covering every
candidate, is searched exactly, a small one (GATHER_MAX) by scoring only its own vectors; a wide
one filters the graph walk, and a query whose walk found fewer than k allowed ids is answered
again exactly. Range search walks the graph (approximate). `ef_search` trades speed for
recall and is saved. Memory: n·(dim·4 + ~2·m·4 graph + ~30) bytes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xmodal.errors import InvalidInputError
from xmodal.index._faiss import GATHER_MAX, exhaustive, faiss, gather_search
from xmodal.index.base import VectorIndex
from xmodal.index.fileformat import Members


class HNSWIndex(VectorIndex):
    kind = "hnsw"

    def __init__(
        self,
        dim: int,
        m: int = 32,
        ef_construction: int = 128,
        ef_search: int = 64,
        rebuild_fraction: float = 0.25,
    ):
        super().__init__(dim)
        for name, value in [("m", m), ("ef_construction", ef_construction)]:
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                raise InvalidInputError(f"hnsw {name} must be an integer >= 2, not {value!r}")
        if not 0 < rebuild_fraction < 1:
            raise InvalidInputError(f"rebuild_fraction must be in (0, 1), not {rebuild_fraction}")
        self.m = m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.rebuild_fraction = rebuild_fraction
        self._index = self._new_graph()
        self._label_ids = np.empty(0, np.int64)  # graph label -> id, -1 once dead
        self._lookup: tuple[np.ndarray, np.ndarray] | None = None  # (sorted live ids, labels)
        self._live_bits: np.ndarray | None = None

    @property
    def ef_search(self) -> int:
        return self._ef_search

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidInputError(f"ef_search must be a positive integer, not {value!r}")
        self._ef_search = value

    @property
    def params(self) -> dict[str, Any]:
        return {
            "m": self.m,
            "ef_construction": self.ef_construction,
            "ef_search": self.ef_search,
            "rebuild_fraction": self.rebuild_fraction,
        }

    def _new_graph(self):
        lib = faiss()
        index = lib.IndexHNSWFlat(self.dim, self.m, lib.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.ef_construction
        return index

    # -- ids <-> graph labels ---------------------------------------------------------------

    def _changed(self) -> None:
        self._lookup = None
        self._live_bits = None

    def _labels_of(self, ids: np.ndarray) -> np.ndarray:
        """Graph labels of live ids (all of which must be present)."""
        if self._lookup is None:
            live = np.flatnonzero(self._label_ids >= 0)
            order = np.argsort(self._label_ids[live])
            self._lookup = (self._label_ids[live][order], live[order])
        sorted_ids, labels = self._lookup
        return labels[np.searchsorted(sorted_ids, ids)]

    def _bitmap(self, labels: np.ndarray) -> np.ndarray:
        bits = np.zeros(self._label_ids.size, bool)
        bits[labels] = True
        return np.packbits(bits, bitorder="little")  # IDSelectorBitmap's bit order

    def _to_ids(self, labels: np.ndarray) -> np.ndarray:
        return np.where(labels >= 0, self._label_ids[np.maximum(labels, 0)], -1)

    # -- backend ----------------------------------------------------------------------------

    def _add(self, ids: np.ndarray, vectors: np.ndarray, replaced: np.ndarray) -> None:
        if replaced.size:
            self._label_ids[self._labels_of(replaced)] = -1
        self._index.add(vectors)
        self._label_ids = np.concatenate([self._label_ids, ids])
        self._changed()
        self._maybe_rebuild()

    def _remove(self, ids: np.ndarray) -> None:
        self._label_ids[self._labels_of(ids)] = -1
        self._changed()
        self._maybe_rebuild()

    def _maybe_rebuild(self) -> None:
        dead = self._label_ids.size - self.count()
        if dead <= self.rebuild_fraction * self._label_ids.size:
            return
        live = np.flatnonzero(self._label_ids >= 0)
        vectors = self._index.reconstruct_n(0, self._index.ntotal)[live]
        self._index = self._new_graph()
        self._index.add(vectors)
        self._label_ids = self._label_ids[live]
        self._changed()

    def _live_bitmap(self, allowed: np.ndarray | None) -> np.ndarray | None:
        """Bits of the labels a search may return; None when that is every label."""
        if allowed is not None:
            return self._bitmap(self._labels_of(allowed))
        if self._label_ids.size == self.count():
            return None
        if self._live_bits is None:
            self._live_bits = np.packbits(self._label_ids >= 0, bitorder="little")
        return self._live_bits

    def _search(self, queries, k, allowed):
        return self._walk(queries, k, allowed, exhaustive(k, self.count(), allowed))

    def _search_exact(self, queries, k, allowed):
        return self._walk(queries, k, allowed, True)

    def _walk(self, queries, k, allowed, exact: bool):
        lib = faiss()
        if exact and allowed is not None and allowed.size <= GATHER_MAX:
            labels = self._labels_of(allowed)
            return gather_search(self._storage().reconstruct_batch(labels), allowed, queries, k)
        if exact:
            params = lib.SearchParameters()
            target = self._storage()
        else:
            params = lib.SearchParametersHNSW()
            params.efSearch = max(self.ef_search, k)
            target = self._index
        bitmap = self._live_bitmap(allowed)
        if bitmap is not None:
            # The selector reads the bitmap in place, and params.sel does not keep the
            # selector alive: both locals must outlive the search.
            selector = lib.IDSelectorBitmap(bitmap.size, lib.swig_ptr(bitmap))
            params.sel = selector
        scores, labels = target.search(queries, k, params=params)
        return scores, self._to_ids(labels)

    def _storage(self):
        """The graph's exact vectors, by label (an IndexFlatIP)."""
        return faiss().downcast_index(self._index.storage)

    def _range_search(self, queries, threshold):
        lib = faiss()
        params = lib.SearchParametersHNSW()
        params.efSearch = self.ef_search
        bitmap = self._live_bitmap(None)
        if bitmap is not None:
            selector = lib.IDSelectorBitmap(bitmap.size, lib.swig_ptr(bitmap))
            params.sel = selector
        lims, scores, labels = self._index.range_search(queries, threshold, params=params)
        return lims, scores, self._to_ids(labels)

    def _state(self):
        return {}, {"graph": self._index, "label_ids": self._label_ids}

    def _restore(self, meta: dict[str, Any], members: Members) -> None:
        lib = faiss()
        graph = members.faiss_index("graph")
        label_ids = members.array("label_ids")
        if (
            not isinstance(graph, lib.IndexHNSWFlat)
            or graph.d != self.dim
            or graph.ntotal != label_ids.size
            or label_ids.dtype != np.int64
            or not np.array_equal(np.sort(label_ids[label_ids >= 0]), self._ids)
        ):
            raise ValueError("stored graph does not match its ids")
        self._index = graph
        self._label_ids = label_ids
