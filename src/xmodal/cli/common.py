"""What the command groups share: options, model loading, the error handling of `main`."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import click
import numpy as np

from xmodal.errors import AudioLoadError, CollectionBusyError, ImageLoadError, XmodalError

MODEL_HELP = (
    "model (default: $XMODAL_MODEL or 'lite'): lite, lite-en, openclip:ARCH/TAG, "
    "openclip:ARCH/FILE.safetensors, hf:REPO_OR_DIR, a folder from `xmodal train`, or "
    "openclip:ARCH/random for random weights on purpose; `xmodal models` lists them"
)
DEVICE_HELP = (
    "where the model runs: cpu, cuda, cuda:N, mps or auto (cuda when there is one, else mps, "
    "else cpu); float16 on CUDA where the model allows. Default: $XMODAL_DEVICE, else cpu"
)
# Skipped entries listed one by one before the rest are only counted.
SHOWN_SKIPS = 20
# sysexits.h EX_TEMPFAIL: another process is indexing; a scheduler may simply retry later.
EXIT_BUSY = 75


class ErrorGroup(click.Group):
    """Turns xmodal's typed errors into one-line messages and a non-zero exit, never a
    traceback: 1, or EXIT_BUSY when another process is writing the collection."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CollectionBusyError as e:
            warn(f"error: {e}")
            ctx.exit(EXIT_BUSY)
        except XmodalError as e:
            warn(f"error: {e}")
            ctx.exit(1)


def warn(message: str) -> None:
    click.echo(message, err=True)


def model_option(f):
    return click.option("--model", "-m", "model_name", default=None, help=MODEL_HELP)(f)


def batch_option(f):
    return click.option(
        "--batch-size", type=click.IntRange(min=1), default=None, help="items per model call"
    )(f)


def db_option(f):
    return click.option(
        "--db", default=None, help="collection folder (default: $XMODAL_DB or the user data dir)"
    )(f)


def _use_device(ctx, param, value: str | None) -> str | None:
    """Check --device (or XMODAL_DEVICE) before anything opens or loads, and make it the
    process's device: a collection loads its own model when it first needs it, wherever
    XMODAL_DEVICE says."""
    from xmodal.models.device import resolve_device

    resolved = resolve_device(value)  # DeviceError / InvalidInputError: "error: ..." and exit 1
    if value is None:
        return None
    os.environ["XMODAL_DEVICE"] = resolved
    return resolved


def device_option(help_text: str = DEVICE_HELP, *, expose: bool = True):
    """--device; expose=False for commands whose collection loads the model (from the
    environment the option sets), so they take no parameter they do not use."""

    def decorate(f):
        return click.option(
            "--device", default=None, callback=_use_device, expose_value=expose, help=help_text
        )(f)

    return decorate


def load_encoder(model_name: str | None, batch_size: int | None = None, device: str | None = None):
    from xmodal.engine.threads import query_plan
    from xmodal.models import load_model

    encoder = load_model(model_name, device=device, num_threads=query_plan().model_threads)
    if batch_size:
        encoder.batch_size = batch_size
    return encoder


def embed_paths(encoder, paths: Sequence[str]) -> Iterator[tuple[str, np.ndarray | None, str]]:
    """Yield (path, vector, "") per readable image or sound (by its extension, when the model
    hears) and (path, None, reason) per unreadable one.

    Images are loaded a batch at a time so one bad file costs only itself and memory stays
    bounded by the batch size.
    """
    from xmodal.audio import is_audio_file
    from xmodal.images import load_image

    for start in range(0, len(paths), encoder.batch_size):
        chunk = paths[start : start + encoder.batch_size]
        loaded, names = [], []
        for path in chunk:
            if is_audio_file(path):
                yield path, *_embed_sound(encoder, path)
                continue
            try:
                loaded.append(load_image(path))
                names.append(path)
            except ImageLoadError as e:
                yield path, None, e.reason
        vectors = encoder.embed_images(loaded) if loaded else []
        yield from ((name, vec, "") for name, vec in zip(names, vectors))


def _embed_sound(encoder, path: str) -> tuple[np.ndarray | None, str]:
    from xmodal.models.base import AUDIO

    if AUDIO not in encoder.modalities:
        return None, f"{encoder.name} does not embed sounds"
    try:
        return encoder.embed_audio([path])[0], ""
    except AudioLoadError as e:
        return None, e.reason


def warn_skipped(skipped: Sequence[tuple[str, str]]) -> None:
    for ref, reason in skipped[:SHOWN_SKIPS]:
        warn(f"skipping {ref}: {reason}")
    if len(skipped) > SHOWN_SKIPS:
        warn(f"... and {len(skipped) - SHOWN_SKIPS} more skipped")
