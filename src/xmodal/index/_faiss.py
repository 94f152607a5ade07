"""FAISS, imported on first use, and the small pieces every FAISS backend shares."""

from __future__ import annotations

import numpy as np

from xmodal.errors import MissingExtraError

# A filter keeping at most this fraction of the live ids is answered by scanning every stored
# vector (the allow-set is checked before any distance, so this stays cheap): graph and
# inverted-list search visit too few allowed ids to fill k once most ids are filtered out.
EXHAUSTIVE_FILTER_FRACTION = 0.1
# An allow-set up to this size is searched exactly by gathering its vectors and scoring only
# them: a scan of every stored vector past a selector costs O(n) per query however few pass.
GATHER_MAX = 8192


def faiss():
    try:
        import faiss as lib
    except ImportError as e:
        raise MissingExtraError("the FAISS index", None, "faiss", "faiss-cpu") from e
    return lib


def exhaustive(k: int, live: int, allowed: np.ndarray | None) -> bool:
    """Whether a search must be exact: k covers every candidate, or the filter is narrow (a
    fraction of the ids, or few enough to score one by one)."""
    if allowed is None:
        return k >= live
    return (
        k >= allowed.size
        or allowed.size <= EXHAUSTIVE_FILTER_FRACTION * live
        or allowed.size <= GATHER_MAX
    )


def id_selector(ids: np.ndarray):
    """An IDSelectorBatch over ids (it copies them, so the array may go away)."""
    lib = faiss()
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    return lib.IDSelectorBatch(ids.size, lib.swig_ptr(ids))


def new_flat(dim: int):
    """Exact inner-product search over vectors stored under caller-chosen ids."""
    lib = faiss()
    return lib.IndexIDMap2(lib.IndexFlatIP(dim))


def gather_search(vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int):
    """Exact FAISS-style (scores [q, k], ids [q, k]) of queries against `vectors` [m, d] stored
    under `ids` [m] (1 <= k <= m); equal scores in ascending id order."""
    scores = queries @ vectors.T
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < len(ids) else None
    if top is None:
        top = np.broadcast_to(np.arange(len(ids)), scores.shape)
    out_scores = np.empty((len(queries), k), np.float32)
    out_ids = np.empty((len(queries), k), np.int64)
    for row, (row_scores, row_top) in enumerate(zip(scores, top)):
        order = row_top[np.lexsort((ids[row_top], -row_scores[row_top]))]
        out_scores[row], out_ids[row] = row_scores[order], ids[order]
    return out_scores, out_ids


def flat_search(index, queries: np.ndarray, k: int, allowed: np.ndarray | None):
    """Search an IndexIDMap2(IndexFlatIP); `allowed` restricts to those ids."""
    if allowed is None:
        return index.search(queries, k)
    if allowed.size <= GATHER_MAX:
        return gather_search(index.reconstruct_batch(allowed), allowed, queries, k)
    params = faiss().SearchParameters()
    selector = id_selector(allowed)  # params.sel does not keep the Python object alive
    params.sel = selector
    return index.search(queries, k, params=params)
