"""A searchable image collection on disk: the Python API that the CLI and the server use.

A collection is a folder holding `catalog.sqlite` (the truth: files, hashes, vectors),
`vectors.index` (a saved ANN index, derived state; see engine/ann.py) and `write.lock`.
Many processes may read a collection while one writes it: writes take the folder's file
lock (engine/lock.py), and readers bring their index in step before each query.

    with Collection.open("~/photos.xmodal") as photos:
        photos.index(["~/Pictures"], progress=True)
        for hit in photos.search_text("a cat on a sofa"):
            print(hit.score, hit.path)
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xmodal.catalog import Catalog, FileRow, Item
from xmodal.config import get_settings
from xmodal.engine.ann import AnnState
from xmodal.engine.dedup import DuplicateGroup, SearchHit
from xmodal.engine.indexer import Indexer, IndexReport, Reader
from xmodal.engine.lock import WriterLock
from xmodal.engine.media import media_extensions
from xmodal.engine.searching import Searching
from xmodal.engine.threads import indexing_plan, query_plan
from xmodal.errors import (
    CatalogError,
    CollectionNotFoundError,
    ImageLoadError,
    InvalidInputError,
    ModelMismatchError,
)
from xmodal.images import IMAGE_EXTENSIONS, decode_image
from xmodal.index import choose_kind, parse_index_spec
from xmodal.itemtext import TEXT_EXTENSIONS, ItemText, embedded_text, sidecar_texts
from xmodal.models.base import IMAGE, Encoder
from xmodal.models.registry import canonical_name
from xmodal.scan import display_path, is_under, scan, to_bytes

INDEXED_EXTENSIONS = IMAGE_EXTENSIONS | TEXT_EXTENSIONS
CATALOG_FILE = "catalog.sqlite"
INDEX_FILE = "vectors.index"
# Temp files of an index save killed midway; younger ones may belong to a save in progress.
_STALE_TEMP_SECONDS = 3600
# How long a short write (add, remove, metadata) waits for a writer such as `xmodal index`.
SHORT_WRITE_WAIT_SECONDS = 30.0

__all__ = [
    "Collection",
    "DuplicateGroup",
    "IndexReport",
    "Item",
    "PreparedFile",
    "SearchHit",
    "default_db_path",
]


@dataclass(frozen=True)
class PreparedFile:
    """An image file read, hashed, decoded and made model input: what add_prepared() stores
    once its vector is known. Made without the writer lock or the catalog."""

    row: FileRow  # what the catalog stores for it
    pixels: Any  # the encoder's prepare_image() output, for embed_prepared()


def default_db_path() -> Path:
    """$XMODAL_DB, else the per-user data folder's `default` collection."""
    if os.environ.get("XMODAL_DB"):
        return Path(os.environ["XMODAL_DB"]).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("xmodal")) / "default"


class Collection(Searching):
    """Images indexed with one model, searchable by text, image or vector.

    Not thread-safe: a server calls it from one thread at a time (prepare_file() and
    writer() excepted). One process writes a collection at a time (the writer lock); every
    query first takes in what other processes changed.
    """

    def __init__(
        self, db_path: Path, catalog: Catalog, encoder: Encoder | None, device: str | None = None
    ):
        self.db_path = db_path
        self._catalog = catalog
        self._encoder = encoder
        self._device = device  # where the model runs once loaded (None: XMODAL_DEVICE, else cpu)
        self._encoder_lock = threading.Lock()  # worker threads may be first to need the model
        self._ann = AnnState(catalog, db_path / INDEX_FILE, lambda: self.dim)
        self._lock = WriterLock(db_path)

    @classmethod
    def open(
        cls,
        db: str | os.PathLike | None = None,
        model: str | Encoder | None = None,
        *,
        create: bool = True,
        device: str | None = None,
    ) -> Collection:
        """Open (or create) the collection in folder `db` (default: default_db_path()).

        A new collection is bound to `model` (default: $XMODAL_MODEL or 'lite'); an existing
        one opens with its own model, and naming another raises ModelMismatchError.
        device: where the model runs when it is loaded (cpu, cuda, cuda:N, mps, auto; None:
        XMODAL_DEVICE, else cpu); checked now, so a bad one fails before any work.
        """
        if device is not None:
            from xmodal.models.device import resolve_device

            resolve_device(device)
        # Absolute: paths inside it (uploads) compare equal to the absolute paths stored.
        db_path = (default_db_path() if db is None else Path(db).expanduser()).resolve()
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
        collection = cls(db_path, catalog, None, device)
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

                # A query-only use: every core the process may use (engine/threads.py).
                threads = query_plan().model_threads
                self._adopt(load_model(self.model_name, device=self._device, num_threads=threads))
            return self._encoder

    def _adopt(self, encoder: Encoder) -> None:
        bound = self._catalog.meta("dim")
        if bound is not None and int(bound) != encoder.dim:
            raise self._mismatch(f"{encoder.name} ({encoder.dim}-d)")
        self._catalog.set_meta("dim", str(encoder.dim), only_if_missing=True)
        # Remembered, so a run with nothing to embed knows which files to scan without loading
        # the model; refreshed at each load (installing the audio extra lets lite hear).
        modalities = ",".join(sorted(encoder.modalities))
        if self._catalog.meta("modalities") != modalities:
            self._catalog.set_meta("modalities", modalities)
        self._encoder = encoder

    def _modalities(self, threads: int) -> frozenset[str]:
        """What the collection's model embeds: from the catalog when known, else loaded (with
        an indexing run's threads: only indexing asks before the model is known)."""
        known = self._catalog.meta("modalities")
        if known is None:
            return self._indexing_encoder(threads).modalities
        return frozenset(known.split(","))

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
        wait: bool = False,
        on_wait: Callable[[], None] | None = None,
        reader: Reader | None = None,
        ocr: bool = False,
        moderation: Any = None,
    ) -> IndexReport:
        """Bring the collection in step with the image files under `paths` (folders walked,
        files taken as they are; none: every folder indexed before).

        New and changed files are embedded, vanished ones removed, moved and copied ones keep
        their vectors. Unreadable files are skipped with a reason and not retried until they
        change. Safe to kill at any moment: the next run completes the work.

        index_kind: "auto", a kind, or a kind with parameters ("ivf:nlist=4096,nprobe=24"; see
        xmodal.index.parse_index_spec). None: the collection's last choice, else "auto".

        Holds the writer lock throughout: if another process writes the collection, raises
        CollectionBusyError, or with wait=True calls on_wait() once and waits its turn.

        reader: reads and embeds the changed files instead of this process's worker threads
        (xmodal.distributed.ray_encode); the catalog decides what changed either way.

        Plain text files (.txt, .md; not the sidecar captions of images) become text items.
        ocr: also read the words printed on images not read before (xmodal.ocr).
        moderation: a Moderator (xmodal.moderation): judge images not judged under its policy;
        flagged ones are then left out of searches unless include_flagged is asked for.
        """
        if isinstance(paths, (str, bytes, os.PathLike)):
            raise InvalidInputError("index takes a list of paths, not one path")
        size = batch_size or get_settings().batch_size
        if size < 1:
            raise InvalidInputError(f"batch size must be at least 1, got {size}")
        with self._lock.hold(wait=wait, on_wait=on_wait):
            report = self._index_locked(
                paths, progress, follow_symlinks, index_kind, max_memory_bytes, size, reader
            )
            if ocr or moderation is not None:
                from xmodal.engine import enrich

                workers = indexing_plan().decode_workers
                if ocr:
                    report.ocr_read = enrich.read_printed_words(
                        self._catalog, workers=workers, progress=progress
                    )
                if moderation is not None:
                    report.moderated = enrich.judge(
                        self._catalog, moderation, workers=workers, progress=progress
                    )
            return report

    def _index_locked(
        self, paths, progress, follow_symlinks, index_kind, max_memory_bytes, size, reader
    ) -> IndexReport:
        choice = index_kind or self._catalog.meta("index_choice") or "auto"
        kind, params = parse_index_spec(choice)
        started = time.perf_counter()
        self._ann.refresh()
        roots = [to_bytes(p) for p in paths] or self._catalog.roots()
        plan = indexing_plan()
        modalities = self._modalities(plan.model_threads)
        # Pictures only for a model that sees: a CLAP model hears and reads, and nothing else.
        unseen = frozenset() if IMAGE in modalities else IMAGE_EXTENSIONS
        extensions = (INDEXED_EXTENSIONS - unseen) | media_extensions(modalities)
        found = scan(roots, follow_symlinks=follow_symlinks, extensions=extensions)
        with self._catalog.transaction():
            self._catalog.add_roots(found.roots)
        # Built under the lock: the files it compares against cannot change under it.
        indexer = Indexer(
            self._catalog,
            lambda: self._indexing_encoder(plan.model_threads),
            batch_size=size,
            workers=plan.decode_workers,
            model_threads=plan.model_threads,
            progress=progress,
            reader=reader,
        )
        report = indexer.run(found.files, scope=found.roots, unlisted=found.unlisted)
        report.skipped[:0] = [(os.fsdecode(p), reason) for p, reason in found.problems]
        self._ann.applied(indexer.inserted, indexer.deleted)
        self._update_ann(kind, params, max_memory_bytes)
        if index_kind:  # remembered, so later runs keep a large collection's chosen index
            self._catalog.set_meta("index_choice", index_kind)
        report.seconds = time.perf_counter() - started
        return report

    def _indexing_encoder(self, threads: int) -> Encoder:
        """The model; loaded, when indexing is the first to need it, with the intra-op threads
        an indexing run leaves it beside the decode workers (engine/threads.py)."""
        with self._encoder_lock:
            if self._encoder is None:
                from xmodal.models import load_model

                self._adopt(load_model(self.model_name, device=self._device, num_threads=threads))
            return self._encoder

    @contextlib.contextmanager
    def writer(self, *, wait: bool = True, timeout: float | None = None) -> Iterator[None]:
        """Hold the writer lock for a block (reentrant): a caller that serialises its calls
        under its own lock takes this one first, so a wait here blocks none of its readers."""
        with self._lock.hold(wait=wait, timeout=timeout):
            yield

    def move_index(self, spec: str, *, batch_size: int | None = None, progress=None) -> int:
        """Rebuild the index as `spec` ("milvus:uri=./v.db", "hnsw", ...) from the stored
        vectors, without encoding, and keep that kind for later runs. Holds the writer lock
        (CollectionBusyError if another process writes). Onto Milvus it goes in batches and
        resumes: a killed move leaves the old index in use, and rerunning completes it."""
        kind, params = parse_index_spec(spec)
        with self._lock.hold(wait=False):
            self._ann.refresh()
            self._ann.move(kind, params, batch_size, progress)
            self._save_ann()
            self._catalog.set_meta("index_choice", spec)
            return self._ann.index.count()

    def _short_write(self):
        return self._lock.hold(timeout=SHORT_WRITE_WAIT_SECONDS)

    def prepare_file(
        self, path: str | os.PathLike, *, max_pixels: int | None = None
    ) -> PreparedFile:
        """Read, hash, decode and prepare one image file for the model, touching neither the
        catalog nor the lock (thread-safe). ImageLoadError if it is not a readable image."""
        path_bytes = to_bytes(path)
        shown = display_path(path_bytes)
        try:
            with open(path_bytes, "rb") as f:
                st = os.fstat(f.fileno())
                data = f.read()
        except OSError as e:
            raise ImageLoadError(shown, e.strerror or str(e)) from None
        try:
            # At the model's input size, as index() decodes; the catalog keeps the full size.
            decoded = decode_image(data, max_pixels=max_pixels, min_side=self.encoder.decode_size)
        except ImageLoadError as e:
            raise type(e)(shown, e.reason) from None
        sidecars = scan([path_bytes]).files
        row = FileRow(
            path_bytes,
            st.st_size,
            st.st_mtime_ns,
            hashlib.blake2b(data, digest_size=16).digest(),
            decoded.width,
            decoded.height,
            sidecar_texts(path_bytes),
            embedded_text(data),
            sidecars[0].sidecars if sidecars else "",
        )
        return PreparedFile(row, self.encoder.prepare_image(decoded.image))

    def add_prepared(self, prepared: PreparedFile, vector: np.ndarray) -> Item:
        """Store a prepared file with its vector (one short transaction under the writer
        lock) and add it to the index; a file already indexed at that path is replaced."""
        vector = np.asarray(vector, np.float32).reshape(-1)
        if vector.size != self.dim or not np.isfinite(vector).all():
            raise InvalidInputError(f"a vector of {self.dim} finite numbers is needed")
        if abs(float(np.linalg.norm(vector)) - 1) > 1e-2:
            raise InvalidInputError("the vector must be L2-normalised")
        row = prepared.row
        with self._short_write():
            self._ann.refresh()
            inserted, deleted = [], []
            with self._catalog.transaction():
                _store(self._catalog, row, vector, inserted, deleted)
            self._ann.applied(inserted, deleted)
        return self._catalog.item_at(row.path)

    def store_rows(
        self, batches: Iterable[tuple[Sequence[FileRow], np.ndarray]], *, wait: bool = False
    ) -> tuple[int, int, int]:
        """Store rows whose vectors were computed elsewhere (embedding shards), one transaction
        per batch, under the writer lock; the index follows. A path already stored with the same
        hash is left as it is, so storing the same rows twice adds nothing.
        Returns (added, replaced, unchanged)."""
        added = replaced = unchanged = 0
        with self._lock.hold(wait=wait):
            self._ann.refresh()
            for rows, vectors in batches:
                vectors = np.asarray(vectors, np.float32)
                if self._catalog.meta("dim") is None and vectors.ndim == 2:
                    # A new collection learns its dimension from the rows: no model loads.
                    self._catalog.set_meta("dim", str(vectors.shape[1]), only_if_missing=True)
                if vectors.shape != (len(rows), self.dim):
                    raise ModelMismatchError(
                        f"vectors of shape {vectors.shape} cannot go into {self.db_path}, "
                        f"whose {self.model_name} vectors have {self.dim} dimensions"
                    )
                inserted, deleted = [], []
                with self._catalog.transaction():
                    for row, vector in zip(rows, vectors):
                        unchanged += not _store(self._catalog, row, vector, inserted, deleted)
                added += len(inserted) - len(deleted)
                replaced += len(deleted)
                self._ann.applied(inserted, deleted)
            kind, params = parse_index_spec(self._catalog.meta("index_choice") or "auto")
            self._update_ann(kind, params, None)
        return added, replaced, unchanged

    def add_file(self, path: str | os.PathLike) -> Item:
        """Index one image file now; raises ImageLoadError if unreadable."""
        prepared = self.prepare_file(path)
        (vector,) = self.encoder.embed_prepared([prepared.pixels])
        return self.add_prepared(prepared, vector)

    def remove(self, item_id: int) -> bool:
        """Forget one item (its file stays on disk: a later index() of its folder re-adds it)."""
        with self._short_write():
            self._ann.refresh()
            with self._catalog.transaction():
                removed = self._catalog.delete_files([item_id]) > 0
            if removed:
                self._ann.applied([], [item_id])
        return removed

    def add_root(self, path: str | os.PathLike) -> None:
        """Record a folder as indexed without scanning it (the server's upload folder)."""
        with self._short_write(), self._catalog.transaction():
            self._catalog.add_roots([to_bytes(path)])

    def set_metadata(self, item_id: int, metadata: dict[str, Any]) -> bool:
        """Replace an item's user metadata (any JSON object); False if there is no such item."""
        with self._short_write(), self._catalog.transaction():
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

    def contains_path(self, path: str | os.PathLike) -> bool:
        """Whether `path`, links resolved, lies inside a folder (or is a file) indexed."""
        real = os.path.realpath(to_bytes(path))
        return any(is_under(real, os.path.realpath(r)) for r in self._catalog.roots())

    def servable_path(self, item: Item) -> Path | None:
        """The item's file, links resolved, if it is a file inside an indexed root: what a
        server may send. None for a file gone or lying (through a link) outside them."""
        real = os.path.realpath(os.fsencode(item.path))
        if os.path.isfile(real) and self.contains_path(real):
            return Path(os.fsdecode(real))
        return None

    def vector(self, item_id: int) -> np.ndarray | None:
        """An item's stored vector ("more like this" without re-encoding), or None."""
        ids, vectors = self._catalog.vectors([item_id])
        return vectors[0] if len(ids) else None

    def vectors_of(self, ids: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
        """(ids found, float32 [n, dim]) of the given items, by id."""
        return self._catalog.vectors(ids)

    def item_texts(self, ids: Iterable[int]) -> dict[int, ItemText]:
        """The text that belongs to each item (captions, embedded descriptions, OCR, body)."""
        return self._catalog.texts(ids)

    def has_text(self) -> bool:
        """Whether any item has text beyond its file name: hybrid search is then the default."""
        return self._catalog.has_text()

    def verdict(self, item_id: int) -> tuple[list[str], dict[str, float]] | None:
        """(flagged categories, scores) of an item's stored moderation verdict, or None."""
        return self._catalog.verdict(item_id)

    # -- lifetime -----------------------------------------------------------------------------

    def close(self) -> None:
        """Save the index if it changed here and no other process is writing (it is
        derived state: the next writer or reader brings it in step anyway)."""
        try:
            # Busy, or a folder we may not write (no lock file): another writer saves it.
            with contextlib.suppress(CatalogError):
                if self._ann.loaded and self._ann_stale_on_disk():
                    with self._lock.hold(wait=False):
                        self._save_ann()
        finally:
            try:
                self._ann.close()
            finally:
                self._catalog.close()

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Collection {self.db_path} model={self.model_name}>"

    # -- the ANN index: derived from the catalog's vectors (engine/ann.py) ----------------------

    def _ann_stale_on_disk(self) -> bool:
        return self._ann.dirty or self._catalog.meta("index_generation") != str(
            self._ann.generation
        )

    def _save_ann(self) -> None:
        """Under the writer lock: the file (if it differs) and the generation it reflects."""
        self._ann.save(stamp_only=not self._ann.dirty)

    def _update_ann(self, kind: str, params: dict, max_memory_bytes: int | None) -> None:
        """After indexing: the index in step, of the kind wanted, saved; untouched (not even
        loaded) when the catalog did not change and the kind stays. Parameters given (nlist, m,
        ...) are compared with the saved index's own, and a difference is a rebuild; parameters
        not given keep their values."""
        n = self.count()
        if n == 0 and not self._ann.loaded:
            return
        wanted = choose_kind(n, self.dim, max_memory_bytes) if kind == "auto" else kind
        catalog = self._catalog
        if (
            not self._ann.dirty
            and not params
            and catalog.meta("index_kind") == wanted
            and catalog.meta("index_generation") == str(catalog.generation)
        ):
            return
        ann = self._ann.current()
        if ann.kind != wanted or any(ann.params.get(k) != v for k, v in params.items()):
            # Another kind (say flat -> hnsw as the collection grows) or other parameters
            # mean a rebuild from the stored vectors, aside, then swapped in.
            self._ann.rebuild(wanted, params)
        if self._ann_stale_on_disk():
            self._save_ann()


def _store(catalog: Catalog, row: FileRow, vector, inserted: list, deleted: list) -> bool:
    """One file's row (in the caller's transaction); False when it was stored already."""
    old = catalog.file_state(row.path)
    if old is not None and old.hash == row.hash:
        catalog.touch_file(old.id, row.size, row.mtime_ns)
        return False
    if old is not None:
        catalog.delete_files([old.id])
        deleted.append(old.id)
    source = catalog.id_with_hash(row.hash)
    # Same bytes as an indexed file: share its vector, as index() does.
    new_id = (
        catalog.insert_copy(row, source) if source is not None else catalog.insert_file(row, vector)
    )
    inserted.append(new_id)
    return True


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
