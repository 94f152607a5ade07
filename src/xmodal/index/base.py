"""The VectorIndex contract every backend implements (the file format is in fileformat.py).

Backends implement a few underscore methods on input that has already been checked. The checks,
the bookkeeping of which ids are live, the trimming of FAISS's -1 padding and the atomic save
happen here, once.

Conventions every backend follows:
- ids are caller-chosen non-negative int64 (the catalog's row ids); adding an id that is already
  present replaces its vector.
- vectors and queries are float32 [n, dim], finite and L2-normalised (NaN/inf, zero or
  unnormalised rows raise InvalidInputError); scores are inner products, i.e. cosine similarity.
- search returns one `Hits` per query holding only real hits, best first: at most k, fewer when
  the index (or the filter's allow-set) holds fewer; never FAISS's -1 padding.
"""

from __future__ import annotations

import itertools
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xmodal.errors import InvalidInputError
from xmodal.index.fileformat import IndexFileError, Members, write_file

# Stored vectors may come back from a float16 catalog column, whose norms drift by ~1e-3.
_NORM_TOLERANCE = 1e-2

IdsLike = Iterable[int] | np.ndarray


@dataclass(frozen=True)
class Hits:
    """One query's hits, best first: ids int64[m] and their scores float32[m]."""

    ids: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def empty(cls) -> Hits:
        return cls(np.empty(0, np.int64), np.empty(0, np.float32))


class VectorIndex(ABC):
    """Caller-chosen int64 ids -> unit vectors, searched by inner product.

    Not thread-safe: one writer at a time, and no search while an add or remove runs.
    """

    kind: str

    def __init__(self, dim: int):
        if isinstance(dim, bool) or not isinstance(dim, int | np.integer) or dim < 1:
            raise InvalidInputError(f"index dimension must be a positive integer, not {dim!r}")
        self.dim = int(dim)
        self._ids = np.empty(0, np.int64)  # live ids, sorted

    # -- what backends implement ------------------------------------------------------------

    @property
    @abstractmethod
    def params(self) -> dict[str, Any]:
        """The constructor's keyword arguments that rebuild this index: saved with it."""

    @abstractmethod
    def _add(self, ids: np.ndarray, vectors: np.ndarray, replaced: np.ndarray) -> None:
        """Store rows; `replaced` lists the ids among them that are already present."""

    @abstractmethod
    def _remove(self, ids: np.ndarray) -> None:
        """Drop ids, all of which are present."""

    @abstractmethod
    def _search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """FAISS-style (scores [q, k], ids [q, k]) with -1 padding; 1 <= k <= live candidates.

        `allowed` is None (every live id) or the sorted, non-empty live ids to restrict to.
        """

    def _search_exact(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Like `_search`, but exact: every candidate scored. Approximate backends override it;
        for an exact backend it is `_search` itself."""
        return self._search(queries, k, allowed)

    @abstractmethod
    def _range_search(
        self, queries: np.ndarray, threshold: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """FAISS-style (lims, scores, ids) of every live id scoring above threshold."""

    @abstractmethod
    def _state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(JSON-able extras, members) to save; a member is an ndarray or a faiss index."""

    @abstractmethod
    def _restore(self, meta: dict[str, Any], members: Members) -> None:
        """Take back what `_state` saved (the constructor has already run with `params`)."""

    # -- the contract -----------------------------------------------------------------------

    def count(self) -> int:
        return int(self._ids.size)

    def __len__(self) -> int:
        return self.count()

    def ids(self) -> np.ndarray:
        """The live ids, sorted (a copy)."""
        return self._ids.copy()

    def add(self, ids: IdsLike, vectors: np.ndarray) -> None:
        """Store vectors under ids; an id already present gets its vector replaced."""
        ids = check_ids(ids)
        if np.unique(ids).size != ids.size:
            raise InvalidInputError("ids passed to add must be unique")
        vectors = self._check_vectors(vectors, "vectors")
        if len(vectors) != len(ids):
            raise InvalidInputError(f"{len(ids)} ids but {len(vectors)} vectors")
        if not ids.size:
            return
        self._add(ids, vectors, np.intersect1d(ids, self._ids))
        self._ids = np.union1d(self._ids, ids)

    def remove(self, ids: IdsLike) -> int:
        """Drop the ids that are present; returns how many were."""
        present = np.intersect1d(check_ids(ids), self._ids)
        if present.size:
            self._remove(present)
            self._ids = np.setdiff1d(self._ids, present, assume_unique=True)
        return int(present.size)

    def search(self, queries: np.ndarray, k: int, filter: IdsLike | None = None) -> list[Hits]:
        """The k best-scoring ids for each query, optionally only among the ids in `filter`.

        queries: float32 [q, dim] (or one [dim] vector); returns q `Hits`. Asking for more than
        the index (or the filter) holds returns all of it.
        """
        queries = self._check_vectors(queries, "queries", allow_1d=True)
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise InvalidInputError(f"k must be a positive integer, not {k!r}")
        allowed = None
        if filter is not None:
            allowed = self._live(check_ids(filter, "filter"))
            if allowed.size == self.count():
                allowed = None  # allows everything: the unfiltered path is faster
        candidates = self.count() if allowed is None else allowed.size
        if candidates == 0 or not len(queries):
            return [Hits.empty() for _ in range(len(queries))]
        k = min(int(k), candidates)
        scores, ids = self._search(queries, k, allowed)
        # A filtered graph walk or a few probed lists can hold fewer than k allowed ids: those
        # queries are answered again exactly, so k hits come back whenever k exist.
        short = np.flatnonzero((ids >= 0).sum(axis=1) < k)
        if short.size:
            scores, ids = scores.copy(), ids.copy()
            scores[short], ids[short] = self._search_exact(queries[short], k, allowed)
        hits = []
        for row_scores, row_ids in zip(scores, ids):
            real = row_ids >= 0
            hits.append(Hits(row_ids[real].astype(np.int64), row_scores[real].astype(np.float32)))
        return hits

    def _live(self, ids: np.ndarray) -> np.ndarray:
        """The live ones of ids, sorted: O(m log n) lookups in the sorted live ids, where
        intersect1d would sort all n of them on every filtered query."""
        ids = np.unique(ids)
        pos = np.minimum(np.searchsorted(self._ids, ids), max(self._ids.size - 1, 0))
        return ids[self._ids[pos] == ids] if self._ids.size else ids[:0]

    def range_search(self, queries: np.ndarray, threshold: float) -> list[Hits]:
        """Every id scoring above threshold for each query, best first (near-duplicates)."""
        queries = self._check_vectors(queries, "queries", allow_1d=True)
        threshold = float(threshold)
        if not np.isfinite(threshold):
            raise InvalidInputError(f"threshold must be finite, not {threshold}")
        if self.count() == 0 or not len(queries):
            return [Hits.empty() for _ in range(len(queries))]
        lims, scores, ids = self._range_search(queries, threshold)
        lims = lims.astype(np.int64)  # FAISS gives uint64, which mixes with int64 as float
        hits = []
        for start, end in itertools.pairwise(lims):
            order = np.argsort(-scores[start:end], kind="stable") + start
            hits.append(Hits(ids[order].astype(np.int64), scores[order].astype(np.float32)))
        return hits

    def save(self, path: str | os.PathLike) -> None:
        """Write the index to one file, atomically: a crash leaves the old file or the new one."""
        extras, members = self._state()
        meta = {"kind": self.kind, "dim": self.dim, "params": self.params, **extras}
        try:
            write_file(Path(path), meta, {"ids": self._ids, **members})
        except OSError as e:
            raise IndexFileError(path, f"cannot write ({e})") from e

    @classmethod
    def _from_file(cls, meta: dict[str, Any], members: Members) -> VectorIndex:
        index = cls(meta["dim"], **meta["params"])
        ids = members.array("ids")
        if ids.dtype != np.int64 or ids.ndim != 1:
            raise ValueError("ids are not a 1-D int64 array")
        index._ids = ids
        index._restore(meta, members)
        return index

    # -- input checks -----------------------------------------------------------------------

    def _check_vectors(self, x: np.ndarray, what: str, allow_1d: bool = False) -> np.ndarray:
        x = np.asarray(x)
        if not np.issubdtype(x.dtype, np.floating):
            raise InvalidInputError(f"{what} must be floats, not {x.dtype}")
        if allow_1d and x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise InvalidInputError(f"{what} must have shape [n, {self.dim}], not {list(x.shape)}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not np.isfinite(x).all():
            raise InvalidInputError(f"{what} contain NaN or infinity")
        norms = np.linalg.norm(x, axis=1)
        bad = np.flatnonzero(np.abs(norms - 1) > _NORM_TOLERANCE)
        if bad.size:
            raise InvalidInputError(
                f"{what} must be L2-normalised: row {bad[0]} has norm {norms[bad[0]]:.4g} "
                "(xmodal.models.base.l2_normalize does it)"
            )
        return x


def check_ids(ids: IdsLike, what: str = "ids") -> np.ndarray:
    """A 1-D int64 array of non-negative ids (-1 is FAISS's 'no hit', so it can't be an id)."""
    if not isinstance(ids, np.ndarray):
        ids = list(ids)
        ids = np.asarray(ids) if ids else np.empty(0, np.int64)
    if ids.dtype == bool or not np.issubdtype(ids.dtype, np.integer) or ids.ndim != 1:
        raise InvalidInputError(f"{what} must be a 1-D sequence of integers")
    if ids.size and ids.min() < 0:
        raise InvalidInputError(f"{what} must be non-negative")
    return ids.astype(np.int64, copy=False)
