"""The encoder contract every backend implements.

A backend implements `_encode_texts` and `_encode_images` (and `_encode_audio` when it hears),
each on one batch at a time.
Everything else (input checks, image loading, batching, progress, normalisation, dtype) is done
here, once. Backends whose per-image work (resize, normalise) can run apart from the model split
`_encode_images` into `prepare_image` (one image, thread-safe, runs in pipeline workers) and
`_encode_prepared` (a batch of prepared images through the model).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from xmodal.audio import AudioSource, Clip, load_audio
from xmodal.errors import InvalidInputError, UnsupportedModalityError
from xmodal.images import ImageSource, load_image
from xmodal.models.preprocess import ImageTransform

TEXT = "text"
IMAGE = "image"
AUDIO = "audio"

# Below this many items a progress bar is noise.
_PROGRESS_MIN_ITEMS = 64


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; an all-zero row stays zero instead of becoming NaN."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


@dataclass(frozen=True)
class Heard:
    """What a model made of one clip: its unit vector and, from a model that transcribes, the
    speech in it as text with (start, end, text) segments in seconds and the share of the clip
    that is speech."""

    vector: np.ndarray
    transcript: str = ""
    segments: tuple[tuple[float, float, str], ...] = ()
    speech_share: float = 0.0


class Encoder(ABC):
    """Maps texts and images into one L2-normalised float32 space.

    Subclasses set `name`, `dim`, `modalities` and `logit_scale` and implement the two
    `_encode_*` methods for one batch (already-loaded RGB images for the image side).
    """

    name: str
    dim: int
    modalities: frozenset[str] = frozenset({TEXT, IMAGE})
    # Multiplies cosine similarity before a softmax (zero-shot) and in "scaled" scores;
    # CLIP-style models learn it, others set a calibrated constant.
    logit_scale: float = 100.0
    batch_size: int = 32
    audio_batch_size: int = 8
    # The sample rate `_encode_audio` wants its clips at (models that hear).
    audio_rate: int = 16_000
    # "int8" once torch_int8 has quantised the model, with its QuantizeReport.
    quantized: str | None = None
    quantize_report = None

    @abstractmethod
    def _encode_texts(self, texts: list[str]) -> np.ndarray:
        """One batch of texts -> float array [len(texts), dim] (need not be normalised)."""

    def _encode_images(self, images: list[Image.Image]) -> np.ndarray:
        """One batch of RGB images -> float array [len(images), dim] (need not be normalised)."""
        raise NotImplementedError(f"{type(self).__name__} must implement _encode_images")

    def _encode_audio(self, clips: list[Clip]) -> np.ndarray:
        """One batch of mono clips at `audio_rate` -> float array [len(clips), dim]."""
        raise NotImplementedError(f"{type(self).__name__} must implement _encode_audio")

    def _hear(self, clips: list[Clip]) -> list[Heard]:
        """One batch of clips -> Heard per clip (vectors need not be normalised). Models that
        transcribe override this; the rest only embed."""
        return [Heard(v) for v in self._encode_audio(clips)]

    @property
    def decode_size(self) -> int | None:
        """Both sides a decoder may shrink an image to before `prepare_image` (JPEGs decode at
        1/2, 1/4 or 1/8 scale, keeping both at least this), or None to decode in full. Backends
        with an ImageTransform in `self.transform` get its value; others decode in full."""
        transform = getattr(self, "transform", None)
        return transform.decode_size if isinstance(transform, ImageTransform) else None

    def prepare_image(self, image: Image.Image) -> Any:
        """Per-image work done before the model, e.g. resize + normalise to a float32 array."""
        return image

    def _encode_prepared(self, prepared: list[Any]) -> np.ndarray:
        """One batch of `prepare_image` outputs -> float array [len(prepared), dim]."""
        return self._encode_images(prepared)

    # -- public API -------------------------------------------------------------------------

    def embed_texts(
        self, texts: Sequence[str], *, batch_size: int | None = None, progress: bool = False
    ) -> np.ndarray:
        self._require(TEXT)
        if isinstance(texts, str):
            raise InvalidInputError("embed_texts takes a list of strings, not one string")
        texts = list(texts)
        for t in texts:
            if not isinstance(t, str):
                raise InvalidInputError(f"texts must be strings, got {type(t).__name__}")
            if not t.strip():
                raise InvalidInputError("empty text: give at least one non-blank character")
        return self._batched(texts, self._encode_texts, batch_size, progress, "texts")

    def embed_images(
        self,
        images: Sequence[ImageSource],
        *,
        batch_size: int | None = None,
        progress: bool = False,
    ) -> np.ndarray:
        """Embed paths, bytes or PIL images; an unreadable one raises ImageLoadError."""
        self._require(IMAGE)

        def encode(batch: list[ImageSource]) -> np.ndarray:
            size = self.decode_size
            loaded = [load_image(src, min_side=size) for src in batch]
            return self._encode_prepared([self.prepare_image(image) for image in loaded])

        return self._batched(list(images), encode, batch_size, progress, "images")

    def embed_prepared(
        self, prepared: Sequence[Any], *, batch_size: int | None = None
    ) -> np.ndarray:
        """Embed `prepare_image` outputs (made in worker threads by an indexing pipeline)."""
        self._require(IMAGE)
        return self._batched(list(prepared), self._encode_prepared, batch_size, False, "images")

    def embed_audio(
        self,
        audio: Sequence[AudioSource],
        *,
        batch_size: int | None = None,
        truncate: bool = False,
    ) -> np.ndarray:
        """Embed paths, bytes, (samples, rate) pairs or Clips; unreadable audio raises
        AudioLoadError. Audio over the duration limit is refused, or with truncate=True cut."""
        heard = self.hear(audio, batch_size=batch_size, truncate=truncate)
        if not heard:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([h.vector for h in heard])

    def hear(
        self,
        audio: Sequence[AudioSource],
        *,
        batch_size: int | None = None,
        truncate: bool = False,
    ) -> list[Heard]:
        """Heard per clip: the unit vector and, from models that transcribe, the speech."""
        self._require(AUDIO)
        if isinstance(audio, (str, bytes, os.PathLike, Clip)):
            raise InvalidInputError("hear/embed_audio take a list of clips, not one clip")
        size = self.audio_batch_size if batch_size is None else batch_size
        if size < 1:
            raise InvalidInputError(f"batch size must be at least 1, got {size}")
        out: list[Heard] = []
        items = list(audio)
        for start in range(0, len(items), size):
            clips = [
                load_audio(src, rate=self.audio_rate, truncate=truncate)
                for src in items[start : start + size]
            ]
            heard = self._hear(clips)
            if len(heard) != len(clips):
                raise RuntimeError(f"{self.name} heard {len(heard)} of {len(clips)} clips")
            for h in heard:
                vector = np.asarray(h.vector, dtype=np.float32).reshape(-1)
                if vector.shape != (self.dim,):
                    raise RuntimeError(
                        f"{self.name} returned an audio vector of shape {vector.shape}, "
                        f"expected ({self.dim},)"
                    )
                out.append(Heard(l2_normalize(vector), h.transcript, h.segments, h.speech_share))
        return out

    def embed_text(self, text: str) -> np.ndarray:
        return self.embed_texts([text])[0]

    def embed_image(self, image: ImageSource) -> np.ndarray:
        return self.embed_images([image])[0]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} dim={self.dim}>"

    # -- helpers ----------------------------------------------------------------------------

    def _require(self, modality: str) -> None:
        if modality not in self.modalities:
            noun = {AUDIO: "sounds"}.get(modality, f"{modality}s")
            raise UnsupportedModalityError(f"model {self.name} does not embed {noun}")

    def _batched(self, items, encode, batch_size, progress, unit) -> np.ndarray:
        size = self.batch_size if batch_size is None else batch_size
        if size < 1:
            raise InvalidInputError(f"batch size must be at least 1, got {size}")
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        bar = None
        if progress and len(items) >= _PROGRESS_MIN_ITEMS:
            from tqdm import tqdm

            bar = tqdm(total=len(items), unit=unit[:-1], desc=f"embedding {unit}", leave=False)
        out = np.empty((len(items), self.dim), dtype=np.float32)
        try:
            for start in range(0, len(items), size):
                batch = items[start : start + size]
                vecs = np.asarray(encode(batch), dtype=np.float32)
                if vecs.shape != (len(batch), self.dim):
                    raise RuntimeError(
                        f"{self.name} returned shape {vecs.shape} for {len(batch)} {unit}, "
                        f"expected ({len(batch)}, {self.dim})"
                    )
                out[start : start + len(batch)] = l2_normalize(vecs)
                if bar is not None:
                    bar.update(len(batch))
        finally:
            if bar is not None:
                bar.close()
        return out
