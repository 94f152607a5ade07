"""The ANN index's lifecycle: load, reconcile with the catalog, save with its stamp, swap.

The catalog is the truth; the index in memory and the saved file are derived from it, and
each knows the catalog generation it reflects. Any process may change the catalog, so before
every query the loaded index checks (SQLite's data_version, then the generation) whether it
is still in step, and if not applies the difference of ids: an id's vector never changes,
so the ids present tell everything.

Saving writes the file, then stamps the generation that the index reflects (the one read
with the ids it was reconciled against), never the generation at save time: a writer that
committed in between would otherwise be stamped as included. Saves happen under the
collection's writer lock, so the file and its stamp always come from the same process.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from xmodal.catalog import Catalog
from xmodal.index import (
    KINDS,
    IndexFileError,
    VectorIndex,
    build,
    choose_kind,
    create_index,
    load_index,
)

# Vectors read from the catalog and sent to a remote index at a time (a migration's step).
MOVE_BATCH = 10_000


class AnnState:
    """The loaded index of one Collection; not thread-safe (the collection's caller
    serialises searches and writes)."""

    def __init__(self, catalog: Catalog, path: Path, dim: Callable[[], int]):
        self._catalog = catalog
        self.path = path
        self._dim = dim
        self.index: VectorIndex | None = None
        self.generation = -1  # the catalog generation `index` reflects
        self.dirty = False  # `index` differs from the saved file
        self._data_version: int | None = None

    @property
    def loaded(self) -> bool:
        return self.index is not None

    def current(self) -> VectorIndex:
        """The index, in step with the catalog as of this call: loaded on first use."""
        if self.index is None:
            self._load()
        else:
            self.refresh()
        return self.index

    def refresh(self) -> None:
        """Bring a loaded index in step with commits by other processes (cheap when none)."""
        if self.index is None:
            return
        version = self._catalog.data_version()
        if version == self._data_version:
            return
        self._data_version = version
        if self._catalog.generation == self.generation:
            return  # a meta write, a move or a touch: the vectors are as they were
        if self._catalog.meta("index_kind") not in (None, self.index.kind) or self._moved():
            self._load()  # another process rebuilt it as another kind: take its file
        else:
            self._reconcile(self.index)

    def _moved(self) -> bool:
        """A remote index that another process moved (another URI or collection)."""
        if not _is_remote(self.index.kind):
            return False
        saved = self._catalog.meta("index_params")
        return saved is not None and json.loads(saved) != self.index.params

    def applied(self, inserted, deleted) -> None:
        """Mirror this process's own committed changes (made under the writer lock, after
        refresh(), so the generation now is exactly theirs). An unloaded index catches up on
        load."""
        if self.index is None:
            return
        deleted = np.asarray(deleted, np.int64)
        inserted = np.setdiff1d(np.asarray(inserted, np.int64), deleted)
        if self.index.remove(deleted):
            self.dirty = True
        if inserted.size:
            self.index.add(*self._catalog.vectors(inserted))
            self.dirty = True
        self.generation = self._catalog.generation

    def rebuild(self, kind: str, params: dict) -> None:
        """A new index of `kind` from the stored vectors, built aside, then swapped in.

        A remote kind (Milvus) opens its collection as it stands and gets the difference."""
        self._data_version = self._catalog.data_version()
        if _is_remote(kind):
            fresh = create_index(self._dim(), kind, **self.remote_params(params))
            self._reconcile(fresh)
            self._swap(fresh)
            return
        with self._catalog.reading():
            generation = self._catalog.generation
            ids, vectors = self._catalog.vectors()
        fresh = build(kind, self._dim(), ids, vectors, **params)
        self._swap(fresh)
        self.generation = generation

    def move(self, kind: str, params: dict, batch_size: int | None = None, progress=None) -> None:
        """Like rebuild(), but a remote index is filled in batches of stored vectors, so a
        killed move resumes where it stopped (the rows already there are kept). The caller
        holds the writer lock, so the catalog cannot change meanwhile. progress(done, total)."""
        if not _is_remote(kind):
            self.rebuild(kind, params)
            return
        batch_size = batch_size or MOVE_BATCH
        self._data_version = self._catalog.data_version()
        fresh = create_index(self._dim(), kind, **self.remote_params(params))
        generation, ids = self._catalog.generation, self._catalog.ids()
        fresh.remove(np.setdiff1d(fresh.ids(), ids, assume_unique=True))
        missing = np.setdiff1d(ids, fresh.ids(), assume_unique=True)
        done = ids.size - missing.size
        for start in range(0, missing.size, batch_size):
            fresh.add(*self._catalog.vectors(missing[start : start + batch_size]))
            done += min(batch_size, missing.size - start)
            if progress is not None:
                progress(done, ids.size)
        self._swap(fresh)
        self.generation = generation

    def remote_params(self, params: dict) -> dict:
        """A remote index's parameters, with the collection named after this one unless
        given: two xmodal collections then share one Milvus without meeting."""
        folder = self.path.parent
        digest = hashlib.sha1(str(folder).encode()).hexdigest()[:10]
        from xmodal.index.milvus import collection_name

        return {"collection": collection_name(f"xmodal_{folder.name}_{digest}"), **params}

    def _swap(self, fresh: VectorIndex) -> None:
        old, self.index, self.dirty = self.index, fresh, True
        if old is not None and old is not fresh:
            _close(old)

    def close(self) -> None:
        """Let go of a remote index's connection (milvus-lite's folder lock)."""
        if self.index is not None:
            _close(self.index)

    def save(self, *, stamp_only: bool = False) -> None:
        """Write the file and stamp it; the caller holds the writer lock."""
        if not stamp_only:
            self.index.save(self.path)
        catalog = self._catalog
        catalog.set_meta("index_generation", str(self.generation))
        catalog.set_meta("index_kind", self.index.kind)
        # What a rebuild uses if the file is lost: the saved index's own parameters.
        catalog.set_meta("index_params", json.dumps(self.index.params, sort_keys=True))
        self.dirty = False

    # -- loading ----------------------------------------------------------------------------

    def _load(self) -> None:
        # data_version first: a commit after this point is noticed by the next refresh().
        self._data_version = self._catalog.data_version()
        with self._catalog.reading():
            generation = self._catalog.generation
            stamp = self._catalog.meta("index_generation")
            kind = self._catalog.meta("index_kind")
            params = json.loads(self._catalog.meta("index_params") or "{}") if kind else {}
        saved = self._read_file()
        if saved is None:
            # Missing or damaged: rebuilt from the catalog, saved by the next writer.
            self.rebuild(kind or choose_kind(self._catalog.count(), self._dim()), params)
            return
        self.dirty = False
        if stamp == str(generation):
            # Written before its stamp, so the file holds at least this generation; anything
            # newer is a commit that the next refresh() sees.
            self.index, self.generation = saved, generation
        else:
            # Killed between a catalog commit and the index save, or changed since by a
            # process that did not save: the ids tell what is missing.
            self._reconcile(saved)
            self.index = saved

    def _read_file(self) -> VectorIndex | None:
        try:
            ann = load_index(self.path)
        except IndexFileError:
            return None
        return ann if ann.dim == self._dim() else None

    def _reconcile(self, index: VectorIndex) -> None:
        """Apply the catalog's ids (one snapshot) to `index`: add the new, drop the gone."""
        with self._catalog.reading():
            generation = self._catalog.generation
            ids, have = self._catalog.ids(), index.ids()
            added = np.setdiff1d(ids, have, assume_unique=True)
            vectors = self._catalog.vectors(added) if added.size else None
        gone = np.setdiff1d(have, ids, assume_unique=True)
        if index.remove(gone):
            self.dirty = True
        if vectors is not None and len(vectors[0]):
            index.add(*vectors)
            self.dirty = True
        self.generation = generation


def _is_remote(kind: str) -> bool:
    return kind in KINDS and KINDS[kind].remote


def _close(index: VectorIndex) -> None:
    close = getattr(index, "close", None)
    if close is not None:
        close()
