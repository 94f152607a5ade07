"""A deterministic fake encoder for fast tests: no weights, same input -> same vector.

Texts hash their lower-cased words into buckets (so texts sharing words are similar); images are
summarised by a coarse colour histogram projected with a fixed random matrix; sounds by the
energy in 16 frequency bands, projected the same way. It is not a model of
anything, but it exercises every code path that takes an Encoder.
"""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

from xmodal.audio import Clip
from xmodal.models.base import AUDIO, IMAGE, TEXT, Encoder

_AUDIO_BANDS = 16


class FakeEncoder(Encoder):
    logit_scale = 10.0
    modalities = frozenset({TEXT, IMAGE, AUDIO})
    audio_rate = 8_000

    def __init__(self, dim: int = 32, seed: int = 0):
        self.dim = dim
        self.name = f"fake:{dim}"
        rng = np.random.default_rng(seed)
        self._image_proj = rng.standard_normal((4 * 4 * 4, dim)).astype(np.float32)
        self._audio_proj = rng.standard_normal((_AUDIO_BANDS, dim)).astype(np.float32)

    def _encode_texts(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().split():
                h = hashlib.blake2b(word.encode(), digest_size=8).digest()
                bucket = int.from_bytes(h[:4], "little") % self.dim
                sign = 1.0 if h[4] & 1 else -1.0
                out[i, bucket] += sign
        return out

    def _encode_images(self, images: list[Image.Image]) -> np.ndarray:
        feats = []
        for im in images:
            px = np.asarray(im.convert("RGB").resize((32, 32)), dtype=np.int64) // 64
            codes = px[..., 0] * 16 + px[..., 1] * 4 + px[..., 2]
            feats.append(np.bincount(codes.ravel(), minlength=64).astype(np.float32))
        return np.stack(feats) @ self._image_proj

    def _encode_audio(self, clips: list[Clip]) -> np.ndarray:
        feats = []
        for clip in clips:
            power = np.abs(np.fft.rfft(clip.samples)) ** 2
            bands = np.array_split(power, _AUDIO_BANDS)
            feats.append(np.log1p(np.array([b.sum() for b in bands], dtype=np.float32)))
        return np.stack(feats) @ self._audio_proj


def load(arg: str = "", **options) -> FakeEncoder:
    return FakeEncoder(dim=int(arg) if arg else 32)
