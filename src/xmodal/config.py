"""Settings in one place: environment variables XMODAL_*, read when asked for."""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_MODEL = "lite"


@dataclass(frozen=True)
class Settings:
    model: str = DEFAULT_MODEL
    batch_size: int = 32
    # Above this many pixels an image is refused as a likely decompression bomb.
    max_image_pixels: int = 100_000_000
    # Audio longer than this is cut there (a file) or refused (a query or upload).
    max_audio_seconds: float = 600.0
    # Videos: frames over this many pixels (8K) or files longer than this are refused.
    max_video_pixels: int = 7680 * 4320
    max_video_seconds: float = 4 * 3600.0
    num_threads: int | None = None  # the model's intra-op threads; None: engine/threads.py
    decode_workers: int | None = None  # indexing's decode threads; None: engine/threads.py
    lite_runtime: str = "auto"  # how lite's image tower runs: auto, onnx or torch
    cache_dir: str | None = None  # None: the per-user cache folder
    device: str = "cpu"  # where models run: cpu, cuda, cuda:N, mps or auto
    # "int8": torch backends quantise their Linear layers at load (models/torch_int8.py).
    quantize: str | None = None
    milvus_uri: str | None = None  # where a Milvus index lives: a milvus-lite path or http(s)
    milvus_token: str | None = None  # a Milvus server's "user:password" or API key; never saved
    # Pillow formats that are decoded at all; anything else is skipped with a reason.
    image_formats: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF", "AVIF")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        threads = env.get("XMODAL_NUM_THREADS")
        workers = env.get("XMODAL_DECODE_WORKERS")
        return cls(
            model=env.get("XMODAL_MODEL") or DEFAULT_MODEL,
            batch_size=int(env.get("XMODAL_BATCH_SIZE", cls.batch_size)),
            max_image_pixels=int(env.get("XMODAL_MAX_IMAGE_PIXELS", cls.max_image_pixels)),
            max_audio_seconds=float(env.get("XMODAL_MAX_AUDIO_SECONDS", cls.max_audio_seconds)),
            max_video_pixels=int(env.get("XMODAL_MAX_VIDEO_PIXELS", cls.max_video_pixels)),
            max_video_seconds=float(env.get("XMODAL_MAX_VIDEO_SECONDS", cls.max_video_seconds)),
            num_threads=int(threads) if threads else None,
            decode_workers=int(workers) if workers else None,
            lite_runtime=env.get("XMODAL_LITE_RUNTIME") or cls.lite_runtime,
            cache_dir=env.get("XMODAL_CACHE") or None,
            device=env.get("XMODAL_DEVICE") or cls.device,
            quantize=env.get("XMODAL_QUANTIZE") or None,
            milvus_uri=env.get("XMODAL_MILVUS_URI") or None,
            milvus_token=env.get("XMODAL_MILVUS_TOKEN") or None,
            image_formats=_formats(env.get("XMODAL_IMAGE_FORMATS")) or cls.image_formats,
        )


def _formats(raw: str | None) -> tuple[str, ...]:
    """XMODAL_IMAGE_FORMATS="JPEG,PNG": Pillow format names, case-insensitive."""
    return tuple(f.strip().upper() for f in (raw or "").split(",") if f.strip())


def get_settings() -> Settings:
    return Settings.from_env()
