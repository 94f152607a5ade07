"""What the endpoints share: the collection, the model behind micro-batchers, thumbnails.

The model runs on one thread (a second one would only fight it for the same cores); the
collection (SQLite + FAISS, not thread-safe) is used under one lock from worker threads, so
searches and additions interleave safely. Uploaded images are decoded and resized in worker
threads before they join a batch. Uploaded sounds are decoded (and resampled) in worker threads
too, then heard on the model thread request by request: sound requests are rare next to text
and image ones, and a clip is already a batch's worth of work.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image
from starlette.concurrency import run_in_threadpool

from xmodal.atomic import write_atomically
from xmodal.audio import Clip, load_audio
from xmodal.catalog import VIDEO_KIND, Item
from xmodal.engine.collection import SHORT_WRITE_WAIT_SECONDS, Collection
from xmodal.errors import (
    AudioLoadError,
    ImageLoadError,
    InvalidInputError,
    UnsupportedModalityError,
    VideoLoadError,
)
from xmodal.images import load_image
from xmodal.models.base import AUDIO, Heard
from xmodal.scan import is_under, to_bytes
from xmodal.server.batching import MicroBatcher
from xmodal.server.filetypes import HEADER_BYTES, sniff
from xmodal.server.metrics import Metrics
from xmodal.server.settings import ServerSettings

T = TypeVar("T")
UPLOADS = "uploads"  # inside the collection folder: where POST /items stores uploaded files
_THUMBNAIL_CACHE = 512


@dataclass(frozen=True)
class Upload:
    name: str  # the client's file name, for messages
    data: bytes


class Service:
    def __init__(self, settings: ServerSettings, collection: Collection, metrics: Metrics):
        self.settings = settings
        self.collection = collection
        self.encoder = collection.encoder
        self.metrics = metrics
        self._lock = threading.Lock()
        self._model_thread = ThreadPoolExecutor(1, thread_name_prefix="xmodal-model")
        wait = settings.batch_wait_ms / 1000
        self.texts = MicroBatcher(
            self.encoder.embed_texts,
            self._model_thread,
            max_batch=settings.max_batch,
            max_wait=wait,
            observe=self.metrics.batch_size.labels("text").observe,
        )
        self.images = MicroBatcher(
            self.encoder.embed_prepared,
            self._model_thread,
            max_batch=settings.max_batch,
            max_wait=wait,
            observe=self.metrics.batch_size.labels("image").observe,
        )
        self._thumbnails: OrderedDict[tuple, bytes] = OrderedDict()
        self._thumbnails_lock = threading.Lock()
        self.uploads = collection.db_path / UPLOADS
        self._apps_lock = asyncio.Lock()
        self._moderator = None
        self._llm = None

    # -- applications: moderation, the language model ----------------------------------------

    async def moderator(self):
        """The moderator of settings.moderation_categories, built on first use (its category
        prompts are embedded on the model thread, like every other model call)."""
        async with self._apps_lock:
            if self._moderator is None:
                from xmodal.moderation import Moderator, load_policy

                policy = await run_in_threadpool(load_policy, self.settings.moderation_categories)
                loop = asyncio.get_running_loop()
                self._moderator = await loop.run_in_executor(
                    self._model_thread, Moderator, self.encoder, policy
                )
            return self._moderator

    async def llm(self):
        """The language model of settings.llm, loaded on first use (in a worker thread)."""
        async with self._apps_lock:
            if self._llm is None:
                from xmodal.llm import load_llm

                self._llm = await run_in_threadpool(load_llm, self.settings.llm)
            return self._llm

    async def start(self) -> None:
        await self.texts.start()
        await self.images.start()
        self.metrics.collection_size.set_function(self.collection.count)

    async def stop(self) -> None:
        await self.texts.stop()
        await self.images.stop()
        self._model_thread.shutdown(wait=True)
        with self._lock:
            self.collection.close()

    # -- model ------------------------------------------------------------------------------

    async def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        for text in texts:
            if not text.strip():
                raise InvalidInputError("empty text: give at least one non-blank character")
        return await self.texts.submit(list(texts))

    def decode(self, upload: Upload) -> Image.Image:
        """An uploaded image, under the upload pixel limit; ImageLoadError names the file."""
        try:
            # Decoded at the model's input size, as indexing does, so a JPEG gets one vector
            # whichever way it comes in.
            return load_image(
                upload.data,
                max_pixels=self.settings.max_upload_pixels,
                min_side=self.encoder.decode_size,
            )
        except ImageLoadError as e:
            raise type(e)(upload.name, e.reason) from None

    async def embed_images(self, uploads: Sequence[Upload]) -> np.ndarray:
        """Uploaded images -> rows (decoded and resized in a worker thread, then batched)."""

        def prepare() -> list[Any]:
            return [self.encoder.prepare_image(self.decode(u)) for u in uploads]

        return await self.images.submit(await run_in_threadpool(prepare))

    def decode_audio(self, upload: Upload) -> Clip:
        """An uploaded sound at the model's rate. Longer than max_audio_seconds: cut to it (as
        indexing cuts long files, so a file sent as a query meets its own vector); the Clip
        says it was (truncated). AudioLoadError names the file."""
        try:
            return load_audio(
                upload.data,
                rate=self.encoder.audio_rate,
                max_seconds=self.settings.max_audio_seconds,
                truncate=True,
            )
        except AudioLoadError as e:
            raise AudioLoadError(upload.name, e.reason) from None

    async def hear(self, uploads: Sequence[Upload]) -> tuple[list[Clip], list[Heard]]:
        """Uploaded sounds -> (their clips, what the model heard: vectors, transcripts)."""
        if AUDIO not in self.encoder.modalities:
            raise UnsupportedModalityError(f"model {self.encoder.name} does not hear")
        clips = await run_in_threadpool(lambda: [self.decode_audio(u) for u in uploads])
        self.metrics.batch_size.labels("audio").observe(len(clips))
        loop = asyncio.get_running_loop()
        heard = await loop.run_in_executor(
            self._model_thread, partial(self.encoder.hear, clips, truncate=True)
        )
        return clips, heard

    async def embed_audio(self, uploads: Sequence[Upload]) -> np.ndarray:
        _, heard = await self.hear(uploads)
        return np.stack([h.vector for h in heard])

    # -- collection -------------------------------------------------------------------------

    async def locked(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a collection call in a worker thread, one at a time."""

        def call() -> T:
            with self._lock:
                return fn(*args)

        return await run_in_threadpool(call)

    async def writing(self, fn: Callable[..., T], *args: Any) -> T:
        """Like locked(), for a collection write: the collection's writer lock is taken first,
        so waiting for another process's write (an `xmodal index` run) blocks no search.
        CollectionBusyError if it is still held after SHORT_WRITE_WAIT_SECONDS."""

        def call() -> T:
            with self.collection.writer(timeout=SHORT_WRITE_WAIT_SECONDS), self._lock:
                return fn(*args)

        return await run_in_threadpool(call)

    async def add_path(self, path: str | os.PathLike, *, max_pixels: int | None = None) -> Item:
        """Index one image file: decoded and prepared in a worker thread, embedded on the
        model thread with other requests' images, then stored under the lock (briefly)."""
        prepared = await run_in_threadpool(
            self.collection.prepare_file, path, max_pixels=max_pixels
        )
        (vector,) = await self.images.submit([prepared.pixels])
        return await self.writing(self.collection.add_prepared, prepared, vector)

    def relative_paths(self, paths: Sequence[str]) -> list[str]:
        """Each path under the indexed root that holds it (its name if none does).
        Reads the catalog: call through locked()."""
        roots = [to_bytes(r) for r in self.collection.roots]
        out = []
        for path in paths:
            target = to_bytes(path)
            under = [r for r in roots if is_under(target, r) and r != target]
            best = max(under, key=len, default=None)
            out.append(
                os.fsdecode(os.path.relpath(target, best)) if best else os.path.basename(path)
            )
        return out

    def store_upload(self, upload: Upload) -> Path:
        """Write an uploaded image into the upload folder, named by its content hash and an
        extension from its real format (the client's name is only used in messages)."""
        data = upload.data
        kind = sniff(data[:HEADER_BYTES])
        if kind is None:
            raise ImageLoadError(upload.name, "not an image in an allowed format")
        self.uploads.mkdir(exist_ok=True)
        target = self.uploads / (hashlib.blake2b(data, digest_size=16).hexdigest() + kind.extension)
        if not target.exists():
            write_atomically(target, data)
        return target

    # -- thumbnails -------------------------------------------------------------------------

    def thumbnail(self, item: Item, path: Path, size: int) -> bytes:
        """JPEG no larger than size x size; cached while the file is unchanged. A video
        segment's is its frame halfway through the segment."""
        key = (item.id, size, item.size, item.mtime)
        with self._thumbnails_lock:
            cached = self._thumbnails.get(key)
            if cached is not None:
                self._thumbnails.move_to_end(key)
                return cached
        if item.kind == VIDEO_KIND:
            start, end = item.start or 0.0, item.end or item.start or 0.0
            image = video_frame(path, (start + end) / 2)
        else:
            # Both sides decoded at >= size: the thumbnail's long side is size, whatever the turn.
            image = load_image(path, min_side=size)
        image.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
        out = io.BytesIO()
        image.save(out, "JPEG", quality=85)
        data = out.getvalue()
        with self._thumbnails_lock:
            self._thumbnails[key] = data
            while len(self._thumbnails) > _THUMBNAIL_CACHE:
                self._thumbnails.popitem(last=False)
        return data


_FRAMES_AFTER_SEEK = 600  # a seek lands on the key frame before: at most this many to decode on


def video_frame(path: str | os.PathLike, at: float) -> Image.Image:
    """The video's frame shown at `at` seconds (near the end when `at` is past it), RGB.
    VideoLoadError for a file PyAV cannot decode."""
    name = os.fspath(path)
    try:
        import av
    except ImportError:
        raise VideoLoadError(name, "video decoding needs PyAV (pip install av)") from None
    try:
        with av.open(name) as container:
            if not container.streams.video:
                raise VideoLoadError(name, "no video stream in the file")
            stream = container.streams.video[0]
            if at > 0:
                container.seek(int(at * 1_000_000))  # microseconds, to the key frame before
            frame = None
            for count, frame in enumerate(container.decode(stream)):
                if (frame.time is not None and frame.time >= at) or count >= _FRAMES_AFTER_SEEK:
                    break
            if frame is None:
                raise VideoLoadError(name, f"no frame at {at:.1f} s")
            return frame.to_image().convert("RGB")
    except VideoLoadError:
        raise
    except Exception as e:  # FFmpeg's errors (av.error.*), OSError
        raise VideoLoadError(name, f"not a readable video ({str(e)[:200]})") from None
