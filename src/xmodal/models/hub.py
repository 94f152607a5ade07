"""What the two checkpoint backends (openclip, hf) share: the Hugging Face cache, whether the hub
can be reached, and the image transform built from a checkpoint's own preprocessing config.

huggingface_hub reads HF_HOME, HF_HUB_CACHE and HF_HUB_OFFLINE once, at import. We read them when a
model is loaded, so a process can change them, and pass the cache folder to every download call.
"""

from __future__ import annotations

import os
import socket
import threading
import urllib.request
from collections.abc import Callable
from urllib.parse import urlsplit

import numpy as np
from PIL import Image

from xmodal.errors import InvalidInputError, ModelLoadError
from xmodal.models.preprocess import ImageTransform

# Long enough for a slow link, short enough that an offline machine answers at once.
PROBE_TIMEOUT_S = 2.0

# "squash" (resize both sides to the square, no crop) is how SigLIP models were trained.
RESIZE_MODES = ("crop", "pad", "squash")

_TRUE = {"1", "on", "yes", "true"}


def set_num_threads(num_threads: int | None) -> None:
    """Apply the `num_threads` option (torch's intra-op threads, process-wide) when given."""
    if num_threads is None:
        return
    if num_threads < 1:
        raise InvalidInputError(f"num_threads must be at least 1, got {num_threads}")
    import torch

    torch.set_num_threads(num_threads)


def cache_dir() -> str:
    """The Hugging Face hub cache folder, as the environment says now."""
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.path.expandvars(os.environ["HF_HUB_CACHE"]))
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.path.expandvars(os.environ["HF_HOME"])), "hub")
    return constants.HF_HUB_CACHE


def offline_by_env() -> bool:
    """HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE, set now or when huggingface_hub was imported."""
    from huggingface_hub import constants

    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return constants.HF_HUB_OFFLINE or any(f.strip().lower() in _TRUE for f in flags)


def hub_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """One TCP connect to the hub (or the proxy in front of it), bounded by `timeout` in total.

    The connect runs in a thread because a name lookup is not covered by a socket timeout.
    """
    url = urlsplit(hub_endpoint())
    proxy = urllib.request.getproxies().get(url.scheme)
    target = urlsplit(proxy) if proxy else url
    if not target.hostname:
        return False
    port = target.port or (443 if target.scheme == "https" else 80)
    reached: list[bool] = []

    def connect() -> None:
        try:
            with socket.create_connection((target.hostname, port), timeout=timeout):
                reached.append(True)
        except OSError:
            pass

    probe = threading.Thread(target=connect, daemon=True)
    probe.start()
    probe.join(timeout)
    return bool(reached)


def require_hub(what: str, hint: str) -> None:
    """Raise ModelLoadError at once when `what`, missing from the cache, cannot be downloaded."""
    missing = f"cannot load {what}: not in the local Hugging Face cache ({cache_dir()})"
    if offline_by_env():
        raise ModelLoadError(f"{missing} and HF_HUB_OFFLINE is set. {hint}")
    if not hub_reachable():
        host = urlsplit(hub_endpoint()).hostname
        raise ModelLoadError(
            f"{missing} and {host} cannot be reached (this machine looks offline). {hint}"
        )


def cached_file(repo_id: str, filename: str) -> str | None:
    """Path of `filename` from the cached snapshot of `repo_id`, or None when it is not cached."""
    from huggingface_hub import try_to_load_from_cache

    try:
        path = try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir())
    except ValueError:  # a malformed repo id or file name cannot be cached either
        return None
    return path if isinstance(path, str) else None


def check_resize_mode(resize_mode: str | None) -> str | None:
    if resize_mode is not None and resize_mode not in RESIZE_MODES:
        raise InvalidInputError(
            f"unknown resize_mode {resize_mode!r}: use one of {', '.join(RESIZE_MODES)}"
        )
    return resize_mode


def image_batcher(
    size: int,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    native_mode: str,
    resize_mode: str | None,
    *,
    resample: Image.Resampling = Image.Resampling.BICUBIC,
    pad_color: tuple[int, int, int] | None = None,
    crop_from: int | None = None,
) -> Callable[[list[Image.Image]], np.ndarray]:
    """RGB images -> float32 (n, 3, size, size) the way the checkpoint expects them.

    `native_mode` is how the checkpoint was trained; `resize_mode` (crop, pad, squash) overrides it.
    `crop_from` crops as transformers does: shorter side resized to `crop_from`, then a centred
    crop with its offsets rounded down (open_clip resizes to `size` and rounds half to even).
    `resample` applies to squash and transformers crops; the rest resize bicubic, as
    ImageTransform does.
    """
    mode = check_resize_mode(resize_mode) or native_mode
    batch = _batcher(size, mean, std, mode, resample, pad_color, crop_from)
    # What an ONNX export writes down to rebuild this transform without torch (exported.card).
    batch.spec = {
        "size": size,
        "mean": tuple(mean),
        "std": tuple(std),
        "resize_mode": mode,
        "resample": int(resample),
        "pad_color": None if pad_color is None else tuple(pad_color),
        "crop_from": crop_from,
    }
    return batch


def _batcher(size, mean, std, mode, resample, pad_color, crop_from):
    extra = {} if pad_color is None else {"pad_color": pad_color}
    transform = ImageTransform(
        size=size,
        mean=tuple(mean),
        std=tuple(std),
        resize_mode="pad" if mode == "pad" else "crop",
        **extra,
    )
    if mode == "squash":
        square = (size, size)

        def step(image: Image.Image) -> Image.Image:
            return image if image.size == square else image.resize(square, resample)

    elif mode == "crop" and crop_from is not None:

        def step(image: Image.Image) -> Image.Image:
            return _transformers_crop(image, crop_from, size, resample)

    else:

        def batch(images: list[Image.Image]) -> np.ndarray:
            return transform.batch(images)

        return batch

    # A size x size image passes the crop transform unchanged (no resize, whole-image crop).
    def batch(images: list[Image.Image]) -> np.ndarray:
        return transform.batch([step(image) for image in images])

    return batch


def _transformers_crop(
    image: Image.Image, shortest: int, size: int, resample: Image.Resampling
) -> Image.Image:
    """CLIPImageProcessor's resize (shorter side -> `shortest`, the longer one truncated) and
    centre crop, whose offset is int(excess / 2): an excess of 31 puts 15 pixels left, not 16."""
    w, h = image.size
    new_w, new_h = (
        (shortest, int(shortest * h / w)) if w <= h else (int(shortest * w / h), shortest)
    )
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h), resample)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return image.crop((left, top, left + size, top + size))


def repository_missing(error: BaseException) -> bool:
    """Whether the hub said the repository does not exist, anywhere in the error's chain (the
    libraries wrap it in their own OSErrors)."""
    from huggingface_hub.errors import RepositoryNotFoundError

    cause: BaseException | None = error
    while cause is not None and not isinstance(cause, RepositoryNotFoundError):
        cause = cause.__cause__ or cause.__context__
    return cause is not None
