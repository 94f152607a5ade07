"""Exact inner-product search: every query scans every vector.

Supports everything natively: remove (vectors are compacted), filter (an IDSelectorBatch, the
results stay exact), range search, save. Memory: n·dim·4 bytes plus ~50 bytes per id.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xmodal.index._faiss import faiss, flat_search, new_flat
from xmodal.index.base import VectorIndex
from xmodal.index.fileformat import Members


class FlatIndex(VectorIndex):
    kind = "flat"

    def __init__(self, dim: int):
        super().__init__(dim)
        self._index = new_flat(self.dim)

    @property
    def params(self) -> dict[str, Any]:
        return {}

    def _add(self, ids: np.ndarray, vectors: np.ndarray, replaced: np.ndarray) -> None:
        if replaced.size:
            self._index.remove_ids(replaced)
        self._index.add_with_ids(vectors, ids)

    def _remove(self, ids: np.ndarray) -> None:
        self._index.remove_ids(ids)

    def _search(self, queries, k, allowed):
        return flat_search(self._index, queries, k, allowed)

    def _range_search(self, queries, threshold):
        return self._index.range_search(queries, threshold)

    def _state(self):
        return {}, {"index": self._index}

    def _restore(self, meta: dict[str, Any], members: Members) -> None:
        self._index = restore_flat(members.faiss_index("index"), self.dim, self._ids)


def restore_flat(index, dim: int, ids: np.ndarray):
    """A loaded IndexIDMap2(IndexFlatIP), checked against the ids saved beside it."""
    lib = faiss()
    if (
        not isinstance(index, lib.IndexIDMap2)
        or index.d != dim
        or not np.array_equal(np.sort(lib.vector_to_array(index.id_map)), ids)
    ):
        raise ValueError("stored flat index does not match its ids")
    return index
