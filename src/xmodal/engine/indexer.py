"""The indexing pipeline: found files -> catalog rows and vectors, incrementally and crash-safely.

Worker threads read, hash and decode files (PIL releases the GIL while decoding) while the main
thread runs the model on the images read so far, a few at a time (engine/threads.py
model_batch: on a CPU, small calls leave little model work after the last image is decoded); a
bounded window of reads in flight keeps memory flat. Each batch's rows and vectors are committed
in one transaction, so a run killed at any moment loses at most the batch in flight, and the
next run picks up where it stopped.

Per file: the catalog's size + mtime equal -> unchanged, not even opened. Otherwise the content
hash decides: same bytes at the same path -> touched; bytes of a file that vanished from the
scan -> moved (same id and vector); bytes of another indexed file -> copied (shares its vector);
else decoded and embedded.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import itertools
import os
import time
from collections.abc import Callable, Container, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np

from xmodal.audio import is_audio_file
from xmodal.catalog import (
    AUDIO_KIND,
    IMAGE_KIND,
    TEXT_KIND,
    VIDEO_KIND,
    Catalog,
    FileRow,
    FileState,
    segment_path,
)
from xmodal.engine.media import (
    AudioInput,
    VideoInput,
    VideoPart,
    embed_video,
    hash_file,
    is_media,
    read_audio,
    read_video,
)
from xmodal.engine.threads import blas_threads, model_batch
from xmodal.errors import AudioLoadError, ImageLoadError, InvalidInputError
from xmodal.images import decode_image
from xmodal.itemtext import embedded_text, is_text_item, read_text_item, sidecar_texts
from xmodal.models.base import AUDIO, Encoder, Heard
from xmodal.scan import FoundFile, is_under

# Moves, copies and skips need no model: commit them at least this often anyway.
_MAX_PENDING_ACTIONS = 512


@dataclass
class IndexReport:
    added: int = 0
    updated: int = 0  # a known path with new content
    moved: int = 0  # renamed or moved: kept its vector, not re-encoded
    removed: int = 0
    unchanged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    seconds: float = 0.0
    embedded: int = 0  # images actually run through the model
    recaptioned: int = 0  # unchanged files whose sidecar caption changed
    ocr_read: int = 0  # images read for printed words (index --ocr)
    moderated: int = 0  # images given a moderation verdict (index --moderate)

    @property
    def images_per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0


# -- reading one file (worker threads) ----------------------------------------------------------


@dataclass(frozen=True)
class Embedded:
    """A vector computed elsewhere (a Ray actor), in place of model input in FileRead.prepared."""

    vector: np.ndarray


@dataclass(frozen=True)
class TextBody:
    """A text item's content, in place of image model input: the text tower embeds it."""

    text: str


# What a model embeds other than an image.
_NOT_IMAGES = (Embedded, TextBody, AudioInput, VideoInput)


@dataclass
class FileRead:
    """One file read and hashed; what a reader given to Indexer yields per file."""

    found: FoundFile  # size and mtime as of the read (fstat of the open file)
    hash: bytes = b""
    error: str = ""
    prepared: object = None  # None: the hash is already indexed; else model input or Embedded
    width: int = 0
    height: int = 0
    caption: str | None = None
    embedded: str = ""  # descriptions embedded in the file (EXIF, XMP, IPTC, PNG text)
    kind: str = IMAGE_KIND
    body: str = ""  # a text item's content
    duration: float | None = None  # seconds of a sound or video


def _unreadable(found: FoundFile, e: OSError) -> FileRead:
    if isinstance(e, FileNotFoundError):
        return FileRead(found, error="file not found (deleted while indexing?)")
    if isinstance(e, PermissionError):
        return FileRead(found, error="permission denied")
    return FileRead(found, error=f"cannot read file: {e.strerror or e}")


def read_media(
    found: FoundFile, known: Container[bytes], encoder: Callable[[], Encoder]
) -> FileRead:
    """A sound or a video: hashed in chunks (it may be huge), decoded from its path."""
    try:
        digest, st = hash_file(found.path)
    except OSError as e:
        return _unreadable(found, e)
    found = FoundFile(found.path, st.st_size, st.st_mtime_ns, found.sidecars)
    caption = sidecar_texts(found.path)
    try:
        if is_audio_file(found.path):
            if AUDIO not in encoder().modalities:
                return FileRead(found, digest, error=f"{encoder().name} does not embed sounds")
            if digest in known:
                return FileRead(found, digest, caption=caption, kind=AUDIO_KIND)
            audio = read_audio(found.path, encoder())
            return FileRead(
                found,
                digest,
                prepared=audio,
                caption=caption,
                kind=AUDIO_KIND,
                duration=audio.clip.duration,
            )
        # A video is never shared by hash: its segments are rows of their own.
        video = read_video(found.path)
    except (AudioLoadError, ImageLoadError) as e:
        return FileRead(found, digest, error=e.reason)
    except Exception as e:  # a decoder bug on one odd file must not end a run over thousands
        return FileRead(found, digest, error=f"unexpected decoder error: {type(e).__name__}: {e}")
    return FileRead(
        found,
        digest,
        prepared=video,
        width=video.width,
        height=video.height,
        caption=caption,
        kind=VIDEO_KIND,
        duration=video.duration,
    )


def read_file(
    found: FoundFile, known: Container[bytes], encoder: Callable[[], Encoder]
) -> FileRead:
    if is_media(found.path):
        return read_media(found, known, encoder)
    try:
        with open(found.path, "rb") as f:
            st = os.fstat(f.fileno())
            data = f.read()
    except OSError as e:
        return _unreadable(found, e)
    found = FoundFile(found.path, st.st_size, st.st_mtime_ns, found.sidecars)
    digest = hashlib.blake2b(data, digest_size=16).digest()
    if is_text_item(found.path):
        try:
            body = read_text_item(data, found.path)
        except InvalidInputError as e:
            return FileRead(found, digest, error=str(e))
        prepared = None if digest in known else TextBody(body)
        return FileRead(found, digest, prepared=prepared, kind=TEXT_KIND, body=body)
    caption, embedded = sidecar_texts(found.path), embedded_text(data)
    if digest in known:
        return FileRead(found, digest, caption=caption, embedded=embedded)
    try:
        # Reduced-size decode where the model allows; the catalog keeps the full size.
        decoded = decode_image(data, min_side=encoder().decode_size)
    except ImageLoadError as e:
        return FileRead(found, digest, error=e.reason)
    except Exception as e:  # a decoder bug on one odd file must not end a run over thousands
        return FileRead(found, digest, error=f"unexpected decoder error: {type(e).__name__}: {e}")
    return FileRead(
        found,
        digest,
        prepared=encoder().prepare_image(decoded.image),  # resize + normalise in the worker
        width=decoded.width,
        height=decoded.height,
        caption=caption,
        embedded=embedded,
    )


def _bounded_map(pool: ThreadPoolExecutor, fn, items: list, window: int) -> Iterator:
    """pool.map in order, with at most `window` items read ahead (pool.map submits them all)."""
    pending: collections.deque[Future] = collections.deque()
    it = iter(items)
    for item in it:
        pending.append(pool.submit(fn, item))
        if len(pending) >= window:
            break
    while pending:
        done = pending.popleft().result()
        nxt = next(it, None)
        if nxt is not None:
            pending.append(pool.submit(fn, nxt))
        yield done


# -- the run ------------------------------------------------------------------------------------


# Reads the changed files, in any order, given the hashes already indexed (those need no decoding).
Reader = Callable[[list[FoundFile], Container[bytes]], Iterable[FileRead]]


class Indexer:
    """One indexing run against a catalog. `inserted` and `deleted` list the ids it changed, for
    the caller to bring its ANN index in step. A `reader` replaces the worker threads that read
    and prepare files (distributed encoding hands Embedded vectors back)."""

    def __init__(
        self,
        catalog: Catalog,
        encoder: Callable[[], Encoder],
        *,
        batch_size: int,
        workers: int,
        model_threads: int | None = None,
        progress: bool = False,
        reader: Reader | None = None,
    ):
        self.catalog = catalog
        self.reader = reader
        self.encoder = encoder  # called only once an image needs decoding: loads the model
        self.batch_size = batch_size
        self.workers = workers
        self.model_threads = model_threads  # BLAS gets as many during the run (threads.py)
        self.progress = progress
        self.report = IndexReport()
        self.inserted: list[int] = []
        self.deleted: list[int] = []
        self._states = catalog.file_states()
        self._stamps: dict[int, str] | None = None  # id -> sidecar stamp, read when first needed
        self._known = {s.hash: s.id for s in self._states.values()}  # hash -> an id holding it
        self._vanished: dict[bytes, list[int]] = {}  # hash -> ids whose paths left the scan
        self._actions: list[Callable[[], None]] = []
        self._waiting: dict[bytes, FileRead] = {}  # hash -> image for the next commit
        self._unembedded: list[FileRead] = []  # those of _waiting not yet run through the model
        self._model_batch: int | None = None  # chosen once the model is loaded
        self._vectors: dict[bytes, np.ndarray] = {}  # hash -> vector, during a flush
        self._heard: dict[bytes, Heard] = {}  # hash -> what was said in a sound, during a flush
        # hash + path -> a video's segments, or why they could not be read
        self._parts: dict[bytes, list[VideoPart] | str] = {}
        self._batch_ids: dict[bytes, int] = {}  # hash -> id inserted, during a flush

    def run(
        self,
        files: list[FoundFile],
        *,
        scope: Iterable[bytes] = (),
        unlisted: Iterable[bytes] = (),
    ) -> IndexReport:
        """Index `files`; catalog files under `scope` (minus `unlisted` folders) that are not
        among them are removed."""
        started = time.perf_counter()
        scope, unlisted = list(scope), list(unlisted)
        seen = {f.path for f in files}

        def gone(path: bytes) -> bool:
            return (
                path not in seen
                and any(is_under(path, r) for r in scope)
                and not any(is_under(path, u) for u in unlisted)
            )

        for path, state in self._states.items():
            if gone(path):
                self._vanished.setdefault(state.hash, []).append(state.id)
        to_read = self._changed_files(files)
        if to_read:
            # Only when there is work: threadpoolctl's import is most of a no-change run.
            with blas_threads(self.model_threads) if self.model_threads else nullcontext():
                self._read_all(to_read)
                self._flush()
        self._flush()
        self._finish(gone)
        self.report.seconds = time.perf_counter() - started
        return self.report

    def _changed_files(self, files: list[FoundFile]) -> list[FoundFile]:
        skips = self.catalog.skip_states()
        changed = []
        for f in files:
            state = self._states.get(f.path)
            if state is not None and (state.size, state.mtime_ns) == (f.size, f.mtime_ns):
                self.report.unchanged += 1
                self._check_sidecars(state.id, f)
                continue
            skip = skips.get(f.path)
            if skip is not None and (skip.size, skip.mtime_ns) == (f.size, f.mtime_ns):
                self.report.skipped.append((os.fsdecode(f.path), skip.reason))
                continue
            changed.append(f)
        return changed

    def _check_sidecars(self, item_id: int, f: FoundFile) -> None:
        """An unchanged file whose sidecar caption was added, edited or removed: read it again
        (the vector stays)."""
        if self._stamps is None:
            self._stamps = self.catalog.caption_stamps()
        if self._stamps.get(item_id, "") != f.sidecars:
            self.report.recaptioned += 1
            self._act(self.catalog.set_caption, item_id, sidecar_texts(f.path), f.sidecars)

    def _read_all(self, files: list[FoundFile]) -> None:
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=len(files), unit="image", desc="indexing")
        pool = None
        if self.reader is not None:
            # Text items, sounds and videos are read here: a remote reader embeds images.
            texts = [f for f in files if is_text_item(f.path) or is_media(f.path)]
            images = [f for f in files if not (is_text_item(f.path) or is_media(f.path))]
            remote = self.reader(images, set(self._known)) if images else iter(())
            local = (read_file(f, self._known, self.encoder) for f in texts)
            reads = itertools.chain(local, remote)
        else:
            window = self.batch_size + 2 * self.workers
            pool = ThreadPoolExecutor(self.workers, thread_name_prefix="xmodal-read")
            reads = _bounded_map(
                pool, lambda f: read_file(f, self._known, self.encoder), files, window
            )
        try:
            for read in reads:
                self._plan(read)
                if self._unembedded and len(self._unembedded) >= self._embed_size():
                    self._embed()
                if (
                    len(self._waiting) >= self.batch_size
                    or len(self._actions) >= _MAX_PENDING_ACTIONS
                ):
                    self._flush()
                if bar is not None:
                    bar.update(1)
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
            elif hasattr(remote, "close"):  # a generator reader releases what it holds now
                remote.close()
            if bar is not None:
                bar.close()

    def _plan(self, read: FileRead) -> None:
        """Decide what one read file means; the catalog writes wait for the next flush.

        The decisions use the catalog as it will be once the pending actions are written:
        a replaced row's hash leaves `_known` now, images waiting for the model count as known.
        """
        f = read.found
        old = self._states.get(f.path)
        report = self.report
        if read.prepared is None and not read.error and not self._reusable(read, old):
            # The worker skipped decoding for a vector that has been replaced since.
            read = read_file(f, {}, self.encoder)
        if read.error:
            report.skipped.append((os.fsdecode(f.path), read.error))
            if old is not None:
                report.removed += 1
                self._replace(old)
            self._act(self.catalog.record_skip, f.path, f.size, f.mtime_ns, read.error)
            return
        if old is not None and old.hash == read.hash:
            report.unchanged += 1
            self._act(self.catalog.touch_file, old.id, f.size, f.mtime_ns)
            return
        if old is not None:
            self._replace(old)
        vanished = self._vanished.get(read.hash)
        if vanished:
            report.moved += 1
            report.removed += old is not None  # a file moved over another one
            self._act(
                self.catalog.move_file,
                vanished.pop(),
                f.path,
                f.size,
                f.mtime_ns,
                read.caption,
                f.sidecars,
            )
            return
        if old is not None:
            report.updated += 1
        else:
            report.added += 1
        if read.kind == VIDEO_KIND:
            self._waiting[read.hash + f.path] = read  # copies of a video are embedded apart
            self._unembedded.append(read)
            self._act(self._insert_video, read)
        elif read.hash in self._known:
            self._act(self._insert_copy, read, self._known[read.hash])
        elif read.hash in self._waiting:
            self._act(self._insert_copy, read, None)  # its source is embedded in this batch
        else:
            self._waiting[read.hash] = read
            self._unembedded.append(read)
            self._act(self._insert_embedded, read)

    def _reusable(self, read: FileRead, old: FileState | None) -> bool:
        return (
            (old is not None and old.hash == read.hash)
            or bool(self._vanished.get(read.hash))
            or read.hash in self._known
            or read.hash in self._waiting
        )

    def _replace(self, old: FileState) -> None:
        """The file at old's path has new content (or none readable): its row goes."""
        if self._known.get(old.hash) == old.id:
            del self._known[old.hash]
        self._act(self._delete, old.id)

    def _act(self, fn: Callable, *args) -> None:
        self._actions.append(lambda: fn(*args))

    def _embed_size(self) -> int:
        # Images embedded elsewhere need no model: those wait for the commit, never load it.
        if isinstance(self._unembedded[0].prepared, Embedded):
            return self.batch_size
        if self._model_batch is None:
            self._model_batch = model_batch(self.encoder(), self.batch_size)
        return self._model_batch

    def _embed(self) -> None:
        """Vectors for the images waiting that have none yet."""
        reads, self._unembedded = self._unembedded, []
        # Vectors embedded elsewhere are taken as they are; the model loads only for the rest.
        images = [r for r in reads if not isinstance(r.prepared, _NOT_IMAGES)]
        texts = [r for r in reads if isinstance(r.prepared, TextBody)]
        sounds = [r for r in reads if isinstance(r.prepared, AudioInput)]
        for r in reads:
            if isinstance(r.prepared, VideoInput):
                try:
                    parts = list(embed_video(r.prepared, self.encoder()))
                except AudioLoadError as e:  # replaced or deleted since it was probed
                    parts = e.reason
                self._parts[r.hash + r.found.path] = parts
        if sounds:
            heard = self.encoder().hear([r.prepared.clip for r in sounds])
            self._heard.update((r.hash, h) for r, h in zip(sounds, heard))
            self._vectors.update((r.hash, h.vector) for r, h in zip(sounds, heard))
        if images:
            vectors = self.encoder().embed_prepared([r.prepared for r in images])
            self._vectors.update((r.hash, v) for r, v in zip(images, vectors))
        if texts:
            vectors = self.encoder().embed_texts([r.prepared.text for r in texts])
            self._vectors.update((r.hash, v) for r, v in zip(texts, vectors))
        self._vectors.update(
            (r.hash, r.prepared.vector) for r in reads if isinstance(r.prepared, Embedded)
        )
        self.report.embedded += len(reads)

    def _flush(self) -> None:
        """Embed the images still waiting, then write every pending action in one transaction."""
        if not self._actions:
            return
        if self._unembedded:
            self._embed()
        with self.catalog.transaction():
            for action in self._actions:
                action()
        self._actions, self._waiting, self._vectors, self._batch_ids = [], {}, {}, {}
        self._heard, self._parts = {}, {}

    def _row(self, read: FileRead, width: int, height: int) -> FileRow:
        f = read.found
        return FileRow(
            f.path,
            f.size,
            f.mtime_ns,
            read.hash,
            width,
            height,
            read.caption,
            read.embedded,
            f.sidecars,
            read.kind,
            read.body,
            read.duration,
        )

    def _insert_embedded(self, read: FileRead) -> None:
        row = self._row(read, read.width, read.height)
        heard = self._heard.get(read.hash)
        if heard is not None:
            row = dataclasses.replace(row, body=heard.transcript)
        new_id = self.catalog.insert_file(row, self._vectors[read.hash])
        if heard is not None and heard.segments:
            self.catalog.set_speech(new_id, heard.speech_share, heard.segments)
        self._batch_ids[read.hash] = new_id
        self._inserted(new_id, read.hash)

    def _insert_video(self, read: FileRead) -> None:
        """The video's row (its file state, no vector), then a row per segment."""
        parts = self._parts[read.hash + read.found.path]
        if isinstance(parts, str):  # unreadable after all: a skip, as if its read had failed
            f = read.found
            self.report.skipped.append((os.fsdecode(f.path), parts))
            if f.path in self._states:  # its old rows went: counted as removed, not updated
                self.report.updated -= 1
                self.report.removed += 1
            else:
                self.report.added -= 1
            self.catalog.record_skip(f.path, f.size, f.mtime_ns, parts)
            return
        parent = self.catalog.insert_file(self._row(read, read.width, read.height), None)
        self._known.setdefault(read.hash, parent)
        for part in parts:
            row = dataclasses.replace(
                self._row(read, part.width, part.height),
                path=segment_path(read.found.path, part.start),
                caption=None,
                body=part.heard.transcript if part.heard else "",
                parent=parent,
                start=part.start,
                end=part.end,
            )
            new_id = self.catalog.insert_file(row, part.vector)
            if part.heard is not None and part.heard.segments:
                self.catalog.set_speech(new_id, part.heard.speech_share, part.heard.segments)
            self.inserted.append(new_id)

    def _insert_copy(self, read: FileRead, source: int | None) -> None:
        if source is None:
            source = self._batch_ids[read.hash]
        # A copy need not be decoded: its size in pixels is its source's.
        width, height = self.catalog.dimensions(source)
        new_id = self.catalog.insert_copy(self._row(read, width, height), source)
        self._inserted(new_id, read.hash)

    def _inserted(self, new_id: int, digest: bytes) -> None:
        self._known.setdefault(digest, new_id)
        self.inserted.append(new_id)

    def _delete(self, item_id: int) -> None:
        self.deleted.extend(self.catalog.children([item_id]))
        self.catalog.delete_files([item_id])
        self.deleted.append(item_id)

    def _finish(self, gone: Callable[[bytes], bool]) -> None:
        """Remove what vanished and was not moved; forget bad files that are gone."""
        leftover = [i for ids in self._vanished.values() for i in ids]
        stale_skips = [p for p in self.catalog.skip_states() if gone(p)]
        if not (leftover or stale_skips):
            return
        with self.catalog.transaction():
            self.deleted.extend(self.catalog.children(leftover))
            self.report.removed += self.catalog.delete_files(leftover)
            self.catalog.forget_skips(stale_skips)
        self.deleted.extend(leftover)
