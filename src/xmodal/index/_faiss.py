"""FAISS, imported on first use, and the small pieces every FAISS backend shares."""

from __future__ import annotations

import numpy as np

from xmodal.errors import MissingExtraError

# A filter keeping at most this fraction of the live ids is answered by scanning every stored
# vector (the allow-set is checked before any distance, so this stays cheap): graph and
# inverted-list search visit too few allowed ids to fill k once most ids are filtered out.
EXHAUSTIVE_FILTER_FRACTION = 0.1


def faiss():
    try:
        import faiss as lib
    except ImportError as e:
        raise MissingExtraError("the FAISS index", None, "faiss", "faiss-cpu") from e
    return lib


def exhaustive(k: int, live: int, allowed: np.ndarray | None) -> bool:
    """Whether a search must scan everything: k covers every candidate, or the filter is narrow."""
    if allowed is None:
        return k >= live
    return k >= allowed.size or allowed.size <= EXHAUSTIVE_FILTER_FRACTION * live


def id_selector(ids: np.ndarray):
    """An IDSelectorBatch over ids (it copies them, so the array may go away)."""
    lib = faiss()
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    return lib.IDSelectorBatch(ids.size, lib.swig_ptr(ids))


def new_flat(dim: int):
    """Exact inner-product search over vectors stored under caller-chosen ids."""
    lib = faiss()
    return lib.IndexIDMap2(lib.IndexFlatIP(dim))


def flat_search(index, queries: np.ndarray, k: int, allowed: np.ndarray | None):
    """Search an IndexIDMap2(IndexFlatIP); `allowed` restricts to those ids."""
    if allowed is None:
        return index.search(queries, k)
    params = faiss().SearchParameters()
    selector = id_selector(allowed)  # params.sel does not keep the Python object alive
    params.sel = selector
    return index.search(queries, k, params=params)
