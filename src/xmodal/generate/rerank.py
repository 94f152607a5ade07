"""Generate and rerank: sample candidates from a diffusers text-to-image pipeline and order them
by the encoder's similarity to the prompt, as DALL-E let CLIP pick among its samples.

The generator is named "diffusers:MODEL_OR_DIR": a folder written by `pipeline.save_pretrained`
or a hub repository id (stabilityai/sd-turbo). A hub repository loads from the local Hugging Face
cache when it is there, without asking the hub; otherwise the hub is probed once, so an offline
machine gets a ModelLoadError within seconds instead of minutes of retries (models/hub.py).

Candidate i is drawn from its own CPU torch.Generator seeded with seed + i: the same seed gives
the same images on any device and whatever the batch, and `Ranked.seed` regenerates one alone.
The ranking encoder only embeds (no gradients), so any model that sees ranks, ONNX ones included.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from xmodal.engine.query import combine, split_weight
from xmodal.errors import (
    InvalidInputError,
    MissingExtraError,
    ModelLoadError,
    ModelNotFoundError,
    UnsupportedModalityError,
)
from xmodal.models import hub
from xmodal.models.base import IMAGE, TEXT, Encoder

PREFIX = "diffusers:"
DEFAULT_STEPS = 25
MAX_CANDIDATES = 256
MAX_STEPS = 1000
MAX_SIZE = 4096
# Stable Diffusion pipelines refuse sides that are not a multiple of 8; others need at least that.
SIZE_MULTIPLE = 8
# A hub id is "name" or "org/name"; anything else can only be a path.
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_SAVE_HINT = "save a pipeline with pipeline.save_pretrained(DIR), then use diffusers:DIR"


@dataclass(frozen=True)
class Ranked:
    """One candidate: the image, its score (the encoder's cosine between the prompt's query
    vector and the image's embedding) and the seed that regenerates it alone (n=1)."""

    image: Image.Image
    score: float
    seed: int


def parse_generator(generator: str) -> str:
    """'diffusers:MODEL_OR_DIR' -> MODEL_OR_DIR; anything else is an InvalidInputError."""
    if not isinstance(generator, str) or not generator.startswith(PREFIX):
        raise InvalidInputError(
            f"unknown generator {generator!r}: use diffusers:MODEL_OR_DIR "
            "(a hub repository id, or a folder saved with pipeline.save_pretrained)"
        )
    source = generator[len(PREFIX) :].strip()
    if not source:
        raise InvalidInputError("diffusers: needs a model: diffusers:MODEL_OR_DIR")
    return source


def load_pipeline(generator: str, device: str | None = None) -> Any:
    """The text-to-image pipeline `generator` names, on `device` (None: XMODAL_DEVICE, else cpu):
    float32 on the CPU, float16 on CUDA. Raises ModelNotFoundError, ModelLoadError, DeviceError."""
    source = parse_generator(generator)
    torch, diffusers = _imports()
    from xmodal.models.device import half_precision, torch_device

    where = torch_device(device)  # an unusable device fails before any weights load
    dtype = torch.float16 if half_precision(where) else torch.float32
    folder = Path(source).expanduser()
    if folder.is_dir():
        pipeline = _from_pretrained(diffusers, str(folder), source, dtype, local_files_only=True)
    elif folder.exists():
        raise ModelNotFoundError(f"{source} is a file; diffusers: takes a folder: {_SAVE_HINT}")
    elif not _REPO_ID.match(source):
        raise ModelNotFoundError(f"folder {source} does not exist: check the path, or {_SAVE_HINT}")
    else:
        pipeline = _from_hub(diffusers, source, dtype)
    _check_text_to_image(pipeline, source)
    pipeline = pipeline.to(where)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def generate_candidates(
    prompt: str,
    generator: str | Any,
    encoder: Encoder | str = "lite",
    n: int = 4,
    seed: int = 0,
    steps: int = DEFAULT_STEPS,
    size: int | None = None,
    negative: str | Sequence[str] | None = None,
    device: str | None = None,
    *,
    guidance: float | None = None,
    batch_size: int = 4,
    on_candidate: Callable[[int, int], None] | None = None,
) -> list[Ranked]:
    """`n` images sampled from the pipeline for `prompt`, best first by the encoder's score.

    generator: "diffusers:MODEL_OR_DIR", or a pipeline load_pipeline returned (loaded once,
    reused). prompt: a text, optionally weighted as in search ("sea^2"). negative: texts the
    pipeline steers away from (its negative_prompt) and whose embeddings are subtracted from the
    query vector that scores, as a search's negative terms are. size: the side of the square
    images (a multiple of 8); None: the pipeline's own. guidance: the pipeline's guidance_scale
    (None: its default; 0 for distilled "turbo" models). on_candidate(done, n) reports progress.
    """
    text, weight = _check_prompt(prompt)
    negatives = _check_negatives(negative)
    _check_counts(n, steps, size, batch_size)
    if isinstance(encoder, str):
        from xmodal.models import load_model

        encoder = load_model(encoder, device=device)
    missing = {TEXT, IMAGE} - set(encoder.modalities)
    if missing:
        raise UnsupportedModalityError(
            f"{encoder.name} cannot rank images against a prompt: it does not embed "
            f"{' or '.join(sorted(missing))}s"
        )
    # The query first: a prompt the encoder refuses fails before any image is sampled.
    query = combine(encoder.embed_texts([text, *negatives]), [weight] + [-1.0] * len(negatives))
    pipeline = load_pipeline(generator, device) if isinstance(generator, str) else generator
    images = _sample(
        pipeline, text, negatives, n, seed, steps, size, guidance, batch_size, on_candidate
    )
    scores = encoder.embed_images(images) @ query
    # Stable: equal scores keep the sampling order, so the ranking is reproducible too.
    order = sorted(range(n), key=lambda i: -float(scores[i]))
    return [Ranked(images[i], float(scores[i]), seed + i) for i in order]


# -- sampling ---------------------------------------------------------------------------------


def _sample(pipeline, text, negatives, n, seed, steps, size, guidance, batch_size, on_candidate):
    import torch

    options: dict[str, Any] = {"num_inference_steps": steps, "output_type": "pil"}
    if size is not None:
        options["height"] = options["width"] = size
    if guidance is not None:
        options["guidance_scale"] = guidance
    if negatives:
        options["negative_prompt"] = ", ".join(negatives)
    images: list[Image.Image] = []
    for start in range(0, n, batch_size):
        count = min(batch_size, n - start)
        generators = [torch.Generator("cpu").manual_seed(seed + start + i) for i in range(count)]
        try:
            with torch.inference_mode():
                out = pipeline(text, num_images_per_prompt=count, generator=generators, **options)
        except ValueError as e:  # the pipeline's own argument checks (size, steps, guidance)
            raise InvalidInputError(f"the generator refused the request: {e}") from e
        images += [image.convert("RGB") for image in out.images]
        if on_candidate is not None:
            on_candidate(len(images), n)
    return images


# -- checks -----------------------------------------------------------------------------------


def _check_prompt(prompt: str) -> tuple[str, float]:
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidInputError("empty prompt: describe the image to generate")
    text, weight = split_weight(prompt.strip())
    if not text.strip():
        raise InvalidInputError(f"prompt {prompt!r} has a weight but no text")
    if not np.isfinite(weight) or weight <= 0:
        raise InvalidInputError(
            f"prompt weight must be a positive number, got {weight:g}: "
            "give what to avoid as a negative prompt"
        )
    return text.strip(), weight


def _check_negatives(negative: str | Sequence[str] | None) -> list[str]:
    if negative is None:
        return []
    items = [negative] if isinstance(negative, str) else list(negative)
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise InvalidInputError("empty negative prompt: give a text or leave it out")
    return [item.strip() for item in items]


def _check_counts(n: int, steps: int, size: int | None, batch_size: int) -> None:
    for name, value, top in (("n", n, MAX_CANDIDATES), ("steps", steps, MAX_STEPS)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
            raise InvalidInputError(f"{name} must be a whole number from 1 to {top}, got {value!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInputError(f"batch_size must be a whole number from 1, got {batch_size!r}")
    if size is None:
        return
    if (
        isinstance(size, bool)
        or not isinstance(size, int)
        or not SIZE_MULTIPLE <= size <= MAX_SIZE
        or size % SIZE_MULTIPLE
    ):
        raise InvalidInputError(
            f"size must be a multiple of {SIZE_MULTIPLE} from {SIZE_MULTIPLE} to {MAX_SIZE} "
            f"(the generator works on latents {SIZE_MULTIPLE}x smaller), got {size!r}"
        )


def _check_text_to_image(pipeline, source: str) -> None:
    """A pipeline that takes no text prompt (unconditional, image-to-image only) cannot be
    asked for a prompt's candidates."""
    try:
        params = inspect.signature(pipeline.__call__).parameters
    except (TypeError, ValueError):
        return
    needed = ("prompt", "num_inference_steps", "generator")
    absent = [p for p in needed if p not in params]
    if absent:
        raise ModelLoadError(
            f"{source} is a {type(pipeline).__name__}, not a text-to-image pipeline "
            f"(it takes no {', '.join(absent)})"
        )


# -- loading ----------------------------------------------------------------------------------


def _imports():
    try:
        import diffusers
        import torch
    except ImportError as e:
        raise MissingExtraError("the diffusers generator", "generate", "diffusers") from e
    return torch, diffusers


def _from_hub(diffusers, repo: str, dtype):
    try:
        return _from_pretrained(diffusers, repo, repo, dtype, local_files_only=True)
    except _NotCached:
        pass
    hub.require_hub(
        repo, f"Connect once to download it, or {_SAVE_HINT} (there is no folder {repo} here)."
    )
    return _from_pretrained(diffusers, repo, repo, dtype, local_files_only=False)


class _NotCached(Exception):
    """A hub repository that is not (wholly) in the local cache: the caller may download it."""


def _from_pretrained(diffusers, source: str, arg: str, dtype, *, local_files_only: bool):
    from huggingface_hub.errors import LocalEntryNotFoundError

    is_folder = Path(source).is_dir()
    if is_folder and not (Path(source) / "model_index.json").is_file():
        raise ModelLoadError(
            f"{arg} is not a diffusers pipeline: it has no model_index.json. {_SAVE_HINT}"
        )
    try:
        return diffusers.DiffusionPipeline.from_pretrained(
            source, dtype=dtype, cache_dir=hub.cache_dir(), local_files_only=local_files_only
        )
    except LocalEntryNotFoundError as e:
        if local_files_only and not is_folder:
            raise _NotCached from e
        raise _not_loadable(arg, e) from e
    except OSError as e:
        # A cached snapshot lacking a component's files is "not cached" as well.
        if local_files_only and not is_folder:
            raise _NotCached from e
        raise _not_loadable(arg, e) from e
    except ImportError as e:  # a component whose library (e.g. sentencepiece) is missing
        raise ModelLoadError(f"loading {arg} needs a package that is not installed: {e}") from e
    except Exception as e:  # config, safetensors, pickle and shape errors: an unusable pipeline
        raise _not_loadable(arg, e) from e


def _not_loadable(arg: str, e: Exception) -> ModelLoadError | ModelNotFoundError:
    if hub.repository_missing(e):
        return ModelNotFoundError(
            f"no repository {arg} on the hub: check the name, or {_SAVE_HINT}"
        )
    return ModelLoadError(
        f"could not load the pipeline {arg}: {type(e).__name__}: {str(e)[:300]}. Check that it "
        f"holds model_index.json and each component's folder: {_SAVE_HINT}"
    )
