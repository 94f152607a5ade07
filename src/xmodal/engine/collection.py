"""A searchable image collection on disk: the Python API that the CLI and the server use.

A collection is a folder holding `catalog.sqlite` (the truth: files, hashes, vectors) and
`vectors.index` (a saved ANN index, derived state). The index file is written atomically after
changes and the catalog records which catalog generation it reflects; on open, a missing,
corrupt or stale index is brought in step from the stored vectors.

    with Collection.open("~/photos.xmodal") as photos:
        photos.index(["~/Pictures"], progress=True)
        for hit in photos.search_text("a cat on a sofa"):
            print(hit.score, hit.path)
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xmodal.catalog import Catalog, Item
from xmodal.config import get_settings
from xmodal.engine.indexer import Indexer, IndexReport
from xmodal.errors import (
    CollectionNotFoundError,
    ImageLoadError,
    InvalidInputError,
    ModelMismatchError,
)
from xmodal.images import ImageSource
from xmodal.index import VectorIndex, build, choose_kind, load_index, parse_index_spec
from xmodal.index.base import IndexFileError
from xmodal.models.base import Encoder
from xmodal.models.registry import canonical_name
from xmodal.scan import FoundFile, display_path, scan, to_bytes

CATALOG_FILE = "catalog.sqlite"
INDEX_FILE = "vectors.index"
# Temp files of an index save killed midway; younger ones may belong to a save in progress.
_STALE_TEMP_SECONDS = 3600
# Near-duplicate queries per range search: bounds the memory of FAISS's result lists.
_DEDUP_CHUNK = 4096

__all__ = ["Collection", "DuplicateGroup", "IndexReport", "Item", "SearchHit", "default_db_path"]


@dataclass(frozen=True)
class SearchHit:
    id: int
    path: str  # opens the file even when its name is not valid UTF-8 (see scan.display_path)
    score: float


@dataclass(frozen=True)
class DuplicateGroup:
    first: SearchHit  # the one to keep: the most pixels, then the most bytes (score 1.0)
    members: list[SearchHit]  # the others, with their similarity to `first`, best first


def default_db_path() -> Path:
    """$XMODAL_DB, else the per-user data folder's `default` collection."""
    if os.environ.get("XMODAL_DB"):
        return Path(os.environ["XMODAL_DB"]).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("xmodal")) / "default"


class Collection:
    """Images indexed with one model, searchable by text, image or vector.

    Not thread-safe: a server calls it from one thread at a time. One process writes a
    collection at a time.
    """

    def __init__(self, db_path: Path, catalog: Catalog, encoder: Encoder | None):
        self.db_path = db_path
        self._catalog = catalog
        self._encoder = encoder
        self._encoder_lock = threading.Lock()  # worker threads may be first to need the model
        self._ann: VectorIndex | None = None
        self._ann_dirty = False

    @classmethod
    def open(
        cls,
        db: str | os.PathLike | None = None,
        model: str | Encoder | None = None,
        *,
        create: bool = True,
    ) -> Collection:
        """Open (or create) the collection in folder `db` (default: default_db_path()).

        A new collection is bound to `model` (default: $XMODAL_MODEL or 'lite'); an existing
        one opens with its own model, and naming another raises ModelMismatchError.
        """
        db_path = default_db_path() if db is None else Path(db).expanduser()
        if not (db_path / CATALOG_FILE).exists():
            if not create:
                raise CollectionNotFoundError(
                    f"no collection at {db_path}: index some images into it first "
                    f"(xmodal index --db {db_path} FOLDER)"
                )
            db_path.mkdir(parents=True, exist_ok=True)
        catalog = Catalog(db_path / CATALOG_FILE)
        encoder = model if isinstance(model, Encoder) else None
        asked = encoder.name if encoder is not None else model and canonical_name(model)
        catalog.set_meta("model", asked or get_settings().model, only_if_missing=True)
        catalog.set_meta("created", _utc_now(), only_if_missing=True)
        collection = cls(db_path, catalog, None)
        try:
            if asked is not None and asked != collection.model_name:
                raise collection._mismatch(asked)
            if encoder is not None:
                collection._adopt(encoder)
        except ModelMismatchError:
            catalog.close()
            raise
        _remove_stale_temps(db_path)
        return collection

    # -- the model ----------------------------------------------------------------------------

    @property
    def model_name(self) -> str:
        return self._catalog.meta("model")

    @property
    def dim(self) -> int:
        """The vectors' dimension; a new collection learns it from its model (loading it)."""
        dim = self._catalog.meta("dim")
        return int(dim) if dim is not None else self.encoder.dim

    @property
    def encoder(self) -> Encoder:
        """The collection's model, loaded on first use."""
        with self._encoder_lock:
            if self._encoder is None:
                from xmodal.models import load_model

                self._adopt(load_model(self.model_name))
            return self._encoder

    def _adopt(self, encoder: Encoder) -> None:
        bound = self._catalog.meta("dim")
        if bound is not None and int(bound) != encoder.dim:
            raise self._mismatch(f"{encoder.name} ({encoder.dim}-d)")
        self._catalog.set_meta("dim", str(encoder.dim), only_if_missing=True)
        self._encoder = encoder

    def _mismatch(self, asked: str) -> ModelMismatchError:
        dim = self._catalog.meta("dim")
        bound = self.model_name + (f" ({dim}-d)" if dim else "")
        return ModelMismatchError(
            f"{self.db_path} was indexed with model {bound}, not {asked}: search it with "
            f"--model {self.model_name}, or index into a new collection with "
            f"`xmodal index --db NEWDIR --model {asked.split(' ')[0]} FOLDER`"
        )

    # -- indexing -----------------------------------------------------------------------------

    def index(
        self,
        paths: Sequence[str | os.PathLike] = (),
        *,
        progress: bool = False,
        follow_symlinks: bool = False,
        index_kind: str | None = None,
        max_memory_bytes: int | None = None,
        batch_size: int | None = None,
    ) -> IndexReport:
        """Bring the collection in step with the image files under `paths` (folders walked,
        files taken as they are; none: every folder indexed before).

        New and changed files are embedded, vanished ones removed, moved and copied ones keep
        their vectors. Unreadable files are skipped with a reason and not retried until they
        change. Safe to kill at any moment: the next run completes the work.

        index_kind: "auto", a kind, or a kind with parameters ("ivf:nlist=4096,nprobe=24"; see
        xmodal.index.parse_index_spec). None: the collection's last choice, else "auto".
        """
        if isinstance(paths, (str, bytes, os.PathLike)):
            raise InvalidInputError("index takes a list of paths, not one path")
        choice = index_kind or self._catalog.meta("index_choice") or "auto"
        kind, params = parse_index_spec(choice)
        size = batch_size or get_settings().batch_size
        if size < 1:
            raise InvalidInputError(f"batch size must be at least 1, got {size}")
        started = time.perf_counter()
        roots = [to_bytes(p) for p in paths] or self._catalog.roots()
        found = scan(roots, follow_symlinks=follow_symlinks)
        with self._catalog.transaction():
            self._catalog.add_roots(found.roots)
        indexer = Indexer(
            self._catalog,
            lambda: self.encoder,
            batch_size=size,
            workers=max(1, min(4, os.cpu_count() or 1)),
            progress=progress,
        )
        report = indexer.run(found.files, scope=found.roots, unlisted=found.unlisted)
        report.skipped[:0] = [(os.fsdecode(p), reason) for p, reason in found.problems]
        self._apply_to_ann(indexer.inserted, indexer.deleted)
        self._update_ann(kind, params, max_memory_bytes)
        if index_kind:  # remembered, so later runs keep a large collection's chosen index
            self._catalog.set_meta("index_choice", index_kind)
        report.seconds = time.perf_counter() - started
        return report

    def add_file(self, path: str | os.PathLike) -> Item:
        """Index one image file now (the server's upload); raises ImageLoadError if unreadable."""
        path_bytes = to_bytes(path)
        try:
            st = os.stat(path_bytes)
        except OSError as e:
            raise ImageLoadError(display_path(path_bytes), e.strerror or str(e)) from None
        indexer = Indexer(self._catalog, lambda: self.encoder, batch_size=1, workers=1)
        report = indexer.run([FoundFile(path_bytes, st.st_size, st.st_mtime_ns)])
        if report.skipped:
            raise ImageLoadError(display_path(path_bytes), report.skipped[0][1])
        self._apply_to_ann(indexer.inserted, indexer.deleted)
        return self._catalog.item_at(path_bytes)

    def remove(self, item_id: int) -> bool:
        """Forget one item (its file stays on disk: a later index() of its folder re-adds it)."""
        with self._catalog.transaction():
            removed = self._catalog.delete_files([item_id]) > 0
        if removed:
            self._apply_to_ann([], [item_id])
        return removed

    def add_root(self, path: str | os.PathLike) -> None:
        """Record a folder as indexed without scanning it (the server's upload folder)."""
        with self._catalog.transaction():
            self._catalog.add_roots([to_bytes(path)])

    def set_metadata(self, item_id: int, metadata: dict[str, Any]) -> bool:
        """Replace an item's user metadata (any JSON object); False if there is no such item."""
        with self._catalog.transaction():
            return self._catalog.set_metadata(item_id, metadata)

    # -- reading ------------------------------------------------------------------------------

    def count(self) -> int:
        return self._catalog.count()

    def get(self, item_id: int) -> Item | None:
        return self._catalog.item(item_id)

    @property
    def roots(self) -> list[str]:
        """The folders (and single files) indexed so far, absolute."""
        return [os.fsdecode(r) for r in self._catalog.roots()]

    def vector(self, item_id: int) -> np.ndarray | None:
        """An item's stored vector ("more like this" without re-encoding), or None."""
        ids, vectors = self._catalog.vectors([item_id])
        return vectors[0] if len(ids) else None

    def search_vectors(
        self,
        vectors: np.ndarray,
        k: int = 10,
        threshold: float | None = None,
        where: dict[str, Any] | None = None,
    ) -> list[list[SearchHit]]:
        """The k best items for each query vector (L2-normalised, [n, dim] or [dim]), best
        first; with a threshold, only those scoring at least that; with `where`, only items
        whose metadata matches it (see Catalog.ids_where)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        n = 1 if vectors.ndim == 1 else len(vectors)
        allowed = None if not where else self._catalog.ids_where(where)
        if self.count() == 0 or (allowed is not None and allowed.size == 0):
            return [[] for _ in range(n)]
        results = self._ann_in_step().search(vectors, k, filter=allowed)
        paths = self._catalog.paths(np.concatenate([h.ids for h in results]))
        return [
            [
                SearchHit(int(i), os.fsdecode(paths[int(i)]), float(s))
                for i, s in zip(hits.ids, hits.scores)
                if threshold is None or s >= threshold
            ]
            for hits in results
        ]

    def search_text(
        self,
        text: str,
        k: int = 10,
        threshold: float | None = None,
        where: dict[str, Any] | None = None,
    ) -> list[SearchHit]:
        if self.count() == 0:
            return []
        return self.search_vectors(self.encoder.embed_texts([text]), k, threshold, where)[0]

    def search_image(
        self,
        image: ImageSource,
        k: int = 10,
        threshold: float | None = None,
        where: dict[str, Any] | None = None,
    ) -> list[SearchHit]:
        if self.count() == 0:
            return []
        return self.search_vectors(self.encoder.embed_images([image]), k, threshold, where)[0]

    def near_duplicates(self, threshold: float = 0.95) -> list[DuplicateGroup]:
        """Groups of items whose vectors score above threshold with the group's first item.

        Each group's first item is its largest image; groups are disjoint, biggest first.
        Uses the stored vectors and the index's range search; never loads the model.
        """
        if self.count() < 2:
            return []
        ann = self._ann_in_step()
        ids, vectors = self._catalog.vectors()
        neighbours: dict[int, Any] = {}
        for start in range(0, len(ids), _DEDUP_CHUNK):
            chunk = ids[start : start + _DEDUP_CHUNK]
            for item_id, hits in zip(
                chunk, ann.range_search(vectors[start : start + len(chunk)], threshold)
            ):
                if len(hits) > 1:
                    neighbours[int(item_id)] = hits
        sizes = self._catalog.sizes()
        taken: set[int] = set()
        groups: list[tuple[int, list[tuple[int, float]]]] = []
        for first in sorted(neighbours, key=lambda i: (-sizes[i][0], -sizes[i][1], i)):
            if first in taken:
                continue
            hits = neighbours[first]
            members = [
                (int(i), float(s))
                for i, s in zip(hits.ids, hits.scores)
                if i != first and int(i) not in taken
            ]
            if members:
                taken.update([first, *(i for i, _ in members)])
                groups.append((first, members))
        paths = self._catalog.paths(
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

    # -- lifetime -----------------------------------------------------------------------------

    def close(self) -> None:
        if self._ann_dirty:
            self._save_ann()
        self._catalog.close()

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Collection {self.db_path} model={self.model_name}>"

    # -- the ANN index: derived from the catalog's vectors --------------------------------------

    def _ann_in_step(self) -> VectorIndex:
        """The ANN index, loaded on first use and reconciled with the catalog."""
        if self._ann is not None:
            return self._ann
        generation = self._catalog.generation
        ann = self._read_ann()
        if ann is None:
            kind = self._catalog.meta("index_kind")
            params = json.loads(self._catalog.meta("index_params") or "{}") if kind else {}
            kind = kind or choose_kind(self.count(), self.dim)
            self._ann = build(kind, self.dim, *self._catalog.vectors(), **params)
            self._ann_dirty = True  # saved by close() or the next index()
        elif self._catalog.meta("index_generation") == str(generation):
            self._ann = ann
        else:
            # Killed between a catalog commit and the index save, or changed by remove():
            # the ids tell what is missing, since an id's vector never changes.
            self._ann = ann
            ids, index_ids = self._catalog.ids(), ann.ids()
            self._apply_to_ann(np.setdiff1d(ids, index_ids), np.setdiff1d(index_ids, ids))
            if not self._ann_dirty:  # only mtimes changed: the saved file is current
                self._catalog.set_meta("index_generation", str(generation))
        return self._ann

    def _read_ann(self) -> VectorIndex | None:
        try:
            ann = load_index(self.db_path / INDEX_FILE)
        except IndexFileError:
            return None  # missing or damaged: rebuilt from the catalog
        return ann if ann.dim == self.dim else None

    def _apply_to_ann(self, inserted, deleted) -> None:
        """Mirror catalog changes in the loaded index (an unloaded one catches up on load)."""
        if self._ann is None:
            return
        deleted = np.asarray(deleted, np.int64)
        inserted = np.setdiff1d(np.asarray(inserted, np.int64), deleted)
        if self._ann.remove(deleted):
            self._ann_dirty = True
        if inserted.size:
            self._ann.add(*self._catalog.vectors(inserted))
            self._ann_dirty = True

    def _update_ann(self, kind: str, params: dict, max_memory_bytes: int | None) -> None:
        """After indexing: the index in step, of the kind wanted, saved; untouched (not even
        loaded) when the catalog did not change and the kind stays. Parameters given (nlist, m,
        ...) are compared with the saved index's own, and a difference is a rebuild; parameters
        not given keep their values."""
        n = self.count()
        if n == 0 and self._ann is None:
            return
        wanted = choose_kind(n, self.dim, max_memory_bytes) if kind == "auto" else kind
        catalog = self._catalog
        if (
            not self._ann_dirty
            and not params
            and catalog.meta("index_kind") == wanted
            and catalog.meta("index_generation") == str(catalog.generation)
        ):
            return
        ann = self._ann_in_step()
        if ann.kind != wanted or any(ann.params.get(k) != v for k, v in params.items()):
            # Another kind (say flat -> hnsw as the collection grows) or other parameters
            # mean a rebuild from the stored vectors.
            self._ann = build(wanted, self.dim, *catalog.vectors(), **params)
            self._ann_dirty = True
        if self._ann_dirty:
            self._save_ann()

    def _save_ann(self) -> None:
        generation = self._catalog.generation
        self._ann.save(self.db_path / INDEX_FILE)
        self._catalog.set_meta("index_generation", str(generation))
        self._catalog.set_meta("index_kind", self._ann.kind)
        # What a rebuild uses if the file is lost: the saved index's own parameters.
        self._catalog.set_meta("index_params", json.dumps(self._ann.params, sort_keys=True))
        self._ann_dirty = False


def _remove_stale_temps(db_path: Path) -> None:
    cutoff = time.time() - _STALE_TEMP_SECONDS
    for temp in db_path.glob(f".{INDEX_FILE}.*.tmp"):
        try:
            if temp.stat().st_mtime < cutoff:
                temp.unlink()
        except OSError:
            pass  # another process's business, or already gone


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
