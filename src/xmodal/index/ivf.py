"""Approximate search over compressed vectors in inverted lists: the smallest memory footprint.

Encodings: "sq8" (IndexIVFScalarQuantizer, 1 byte per dimension) and "pq" (IndexIVFPQ, pq_m
codes of pq_bits bits: dim/4 bytes by default). The coarse quantizer and the codes need
training: until `train_size` vectors have been added they sit in an exact flat buffer that
searches exactly; the add that reaches train_size trains on a sample of them (at most
64·nlist) and moves them all into the lists. Remove and replace use FAISS's remove_ids (a scan
of the lists, no extra memory per id). Filters are an IDSelectorBatch checked while the probed
lists are scanned; a narrow one (see EXHAUSTIVE_FILTER_FRACTION), k covering every candidate,
or a query whose probed lists held fewer than k allowed ids, probes every list. `nprobe`
trades speed for recall and is saved. Range search scans nprobe lists (approximate). Scores
are those of the compressed vectors: off by ~0.01 for SQ8 and up to ~0.1-0.2 for PQ, whose
recall@10 also levels off near 0.9 (see benchmarks).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from xmodal.errors import InvalidInputError
from xmodal.index._faiss import exhaustive, faiss, flat_search, id_selector, new_flat
from xmodal.index.base import VectorIndex
from xmodal.index.fileformat import Members
from xmodal.index.flat import restore_flat

ENCODINGS = ("sq8", "pq")
# k-means wants >= 39 points per centroid (FAISS warns below); more than 64 adds little.
MIN_TRAIN_PER_CENTROID = 39
MAX_TRAIN_PER_CENTROID = 64


def default_nlist(expected_size: int) -> int:
    """~sqrt(n) lists: probing a few percent of them keeps recall high at moderate cost."""
    return int(min(65536, max(16, round(math.sqrt(max(expected_size, 1))))))


def default_pq_m(dim: int) -> int:
    """The most sub-quantizers up to dim/4 that divide dim (4 dimensions per byte code)."""
    return max(m for m in range(1, max(dim // 4, 1) + 1) if dim % m == 0)


class IVFIndex(VectorIndex):
    def __init__(
        self,
        dim: int,
        nlist: int = 256,
        nprobe: int = 16,
        encoding: str = "sq8",
        pq_m: int | None = None,
        pq_bits: int = 8,
        train_size: int | None = None,
    ):
        super().__init__(dim)
        if encoding not in ENCODINGS:
            raise InvalidInputError(f"ivf encoding must be one of {ENCODINGS}, not {encoding!r}")
        pq_m = default_pq_m(self.dim) if pq_m is None else pq_m
        if encoding == "pq" and (pq_m < 1 or self.dim % pq_m or not 4 <= pq_bits <= 16):
            raise InvalidInputError(
                f"pq_m must divide dim {self.dim} (got {pq_m}) and pq_bits be 4..16 (got {pq_bits})"
            )
        if isinstance(nlist, bool) or not isinstance(nlist, int) or nlist < 1:
            raise InvalidInputError(f"nlist must be a positive integer, not {nlist!r}")
        centroids = max(nlist, 2**pq_bits if encoding == "pq" else 0)
        self.kind = "ivf" if encoding == "sq8" else "ivf-pq"
        self.nlist = nlist
        self.encoding = encoding
        self.pq_m = pq_m
        self.pq_bits = pq_bits
        self.train_size = (
            # k-means cannot train on fewer points than centroids.
            MIN_TRAIN_PER_CENTROID * centroids if train_size is None else max(train_size, centroids)
        )
        self.nprobe = nprobe
        self._pending = new_flat(self.dim)  # exact buffer until trained
        self._index = None

    @property
    def nprobe(self) -> int:
        return self._nprobe

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidInputError(f"nprobe must be a positive integer, not {value!r}")
        self._nprobe = min(value, self.nlist)

    @property
    def trained(self) -> bool:
        return self._index is not None

    @property
    def params(self) -> dict[str, Any]:
        params = {"nlist": self.nlist, "nprobe": self.nprobe, "encoding": self.encoding}
        if self.encoding == "pq":
            params.update(pq_m=self.pq_m, pq_bits=self.pq_bits)
        return {**params, "train_size": self.train_size}

    def _add(self, ids: np.ndarray, vectors: np.ndarray, replaced: np.ndarray) -> None:
        target = self._index if self.trained else self._pending
        if replaced.size:
            target.remove_ids(replaced)
        if self.trained or self._pending.ntotal + len(ids) < self.train_size:
            target.add_with_ids(vectors, ids)
            return
        if self._pending.ntotal:
            lib = faiss()
            ids = np.concatenate([lib.vector_to_array(self._pending.id_map), ids])
            pending = self._pending.index.reconstruct_n(0, self._pending.ntotal)
            vectors = np.concatenate([pending, vectors])
        self._train(ids, vectors)

    def _train(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        lib = faiss()
        n = len(ids)
        sample_size = min(n, MAX_TRAIN_PER_CENTROID * max(self.nlist, 2**self.pq_bits))
        sample = np.sort(np.random.default_rng(0).choice(n, sample_size, replace=False))
        quantizer = lib.IndexFlatIP(self.dim)
        metric = lib.METRIC_INNER_PRODUCT
        if self.encoding == "sq8":
            qtype = lib.ScalarQuantizer.QT_8bit
            index = lib.IndexIVFScalarQuantizer(quantizer, self.dim, self.nlist, qtype, metric)
        else:
            index = lib.IndexIVFPQ(quantizer, self.dim, self.nlist, self.pq_m, self.pq_bits, metric)
            # One k-means per sub-quantizer (dim/4 of them) dominates the build: ~10k points
            # and 10 iterations give nearly the same codebooks 4x faster than FAISS's defaults.
            index.pq.cp.niter = 10
            index.pq.cp.max_points_per_centroid = MIN_TRAIN_PER_CENTROID
        index.train(vectors[sample])
        index.add_with_ids(vectors, ids)
        self._index = index
        self._pending = None

    def _remove(self, ids: np.ndarray) -> None:
        (self._index if self.trained else self._pending).remove_ids(ids)

    def _search(self, queries, k, allowed):
        return self._probe(queries, k, allowed, exhaustive(k, self.count(), allowed))

    def _search_exact(self, queries, k, allowed):
        return self._probe(queries, k, allowed, True)

    def _probe(self, queries, k, allowed, every_list: bool):
        if not self.trained:
            return flat_search(self._pending, queries, k, allowed)
        params = faiss().SearchParametersIVF()
        params.nprobe = self.nlist if every_list else self.nprobe
        if allowed is not None:
            selector = id_selector(allowed)  # params.sel does not keep it alive
            params.sel = selector
        return self._index.search(queries, k, params=params)

    def _range_search(self, queries, threshold):
        if not self.trained:
            return self._pending.range_search(queries, threshold)
        params = faiss().SearchParametersIVF()
        params.nprobe = self.nprobe
        return self._index.range_search(queries, threshold, params=params)

    def _state(self):
        if self.trained:
            return {"trained": True}, {"index": self._index}
        return {"trained": False}, {"pending": self._pending}

    def _restore(self, meta: dict[str, Any], members: Members) -> None:
        if not meta["trained"]:
            self._pending = restore_flat(members.faiss_index("pending"), self.dim, self._ids)
            return
        lib = faiss()
        index = members.faiss_index("index")
        kind = lib.IndexIVFScalarQuantizer if self.encoding == "sq8" else lib.IndexIVFPQ
        if (
            not isinstance(index, kind)
            or index.d != self.dim
            or index.nlist != self.nlist
            or index.ntotal != self.count()
        ):
            raise ValueError("stored inverted lists do not match their ids")
        self._index = index
        self._pending = None
