"""Text-guided image generation by optimisation (the VQGAN+CLIP / CLIPDraw recipe).

A drawer's parameters (drawers.py) are changed by Adam so that the encoder's embedding of many
augmented views of the image (augment.py) comes close to the prompt's text embedding and away
from the negative prompts'. The text side is embedded once by the encoder itself; only the image
side runs in torch with gradients (towers.py).

Prompts follow search: "sea^2 | boat" is a weighted mix of terms (weight after '^'), a negative
weight or an entry in `negatives` is a text whose similarity is subtracted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from xmodal.errors import InvalidInputError
from xmodal.models.base import Encoder, l2_normalize

MAX_PROMPT_CHARS = 1000
SIZES = (32, 1024)
STEPS = (1, 5000)
MAX_CUTOUTS = 256
MAX_STROKES = 4096
TERM_SEPARATOR = "|"


@dataclass(frozen=True)
class GenerateOptions:
    """drawer: "pixels" or "strokes"; size: the square side in pixels; cutouts: augmented views
    per step; lr: Adam's step (None: the drawer's own); save_every: keep a frame every N steps
    (and the first and last); strokes: how many the strokes drawer draws; device: where lite's
    tower runs (None: the encoder's)."""

    drawer: str = "pixels"
    steps: int = 200
    size: int = 224
    seed: int = 0
    negatives: Sequence[str] = ()
    init_image: Image.Image | None = None
    cutouts: int = 16
    lr: float | None = None
    save_every: int | None = None
    strokes: int = 64
    device: str | None = None


@dataclass
class Generated:
    """image: the result; similarity / start_similarity: cosine between the prompt and the
    final / first image, by the encoder's own embed_images; history: the mean similarity of
    the step's views before each update; frames: images kept by save_every."""

    image: Image.Image
    similarity: float
    start_similarity: float
    history: list[float] = field(default_factory=list)
    frames: list[Image.Image] = field(default_factory=list)


@dataclass(frozen=True)
class Prompt:
    """The unit text vector to approach and the (weight, unit vector) pairs to avoid."""

    target: np.ndarray
    negatives: list[tuple[float, np.ndarray]]


def generate(
    prompt: str,
    encoder: Encoder | str | None = "lite",
    options: GenerateOptions | None = None,
    *,
    on_step: Callable[[int, float], None] | None = None,
) -> Generated:
    """Optimise an image towards `prompt` as `encoder` (a model, a model name, None for the
    configured default) sees it. on_step(step, similarity) is called after every step
    (1-based), e.g. for a progress bar. The same seed gives the same image on the CPU; on a GPU
    some kernels (grid_sample's backward) add in a varying order, so runs differ slightly."""
    options = options or GenerateOptions()
    check_options(options)
    positives, negatives = parse_prompt(prompt, options.negatives)
    encoder = _encoder(encoder, options.device)
    from xmodal.generate.augment import Augment
    from xmodal.generate.drawers import make_drawer
    from xmodal.generate.towers import differentiable_tower

    tower = differentiable_tower(encoder, options.device)
    target = embed_prompt(encoder, positives, negatives)
    init = None if options.init_image is None else _rgb(options.init_image)
    # Our own generators: a seed gives the same run whatever else uses torch's global one.
    g = torch.Generator().manual_seed(options.seed)
    drawer = make_drawer(options.drawer, options.size, g, init=init, strokes=options.strokes)
    drawer = drawer.to(tower.device)
    params = [p for p in drawer.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(params, lr=options.lr or drawer.default_lr)
    goal = torch.from_numpy(target.target).to(tower.device)
    avoid = [(w, torch.from_numpy(v).to(tower.device)) for w, v in target.negatives]
    augment = Augment()

    start = drawer.image()
    frames = [start] if options.save_every else []
    history: list[float] = []
    for step in range(1, options.steps + 1):
        views = augment.views(drawer(), options.cutouts, tower.size, g)
        vecs = tower.embed(views)
        similarity = vecs @ goal
        loss = -similarity.mean()
        for weight, vec in avoid:
            loss = loss + weight * (vecs @ vec).mean()
        # Gradients for the image's parameters only: a shared CLIP model's weights keep none.
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        for p, grad in zip(params, grads):
            p.grad = grad
        optimiser.step()
        history.append(float(similarity.detach().mean()))
        if options.save_every and (step % options.save_every == 0 or step == options.steps):
            frames.append(drawer.image())
        if on_step is not None:
            on_step(step, history[-1])
    image = drawer.image()
    first, last = l2_normalize(encoder.embed_images([start, image])) @ target.target
    return Generated(image, float(last), float(first), history, frames)


def check_options(options: GenerateOptions) -> None:
    from xmodal.generate.drawers import DRAWERS

    if options.drawer not in DRAWERS:
        raise InvalidInputError(
            f"unknown drawer {options.drawer!r}: use one of {', '.join(DRAWERS)}"
        )
    _in_range("size", options.size, *SIZES, "pixels")
    _in_range("steps", options.steps, *STEPS)
    _in_range("cutouts", options.cutouts, 1, MAX_CUTOUTS)
    _in_range("strokes", options.strokes, 1, MAX_STROKES)
    if options.save_every is not None:
        _in_range("save_every", options.save_every, 1, STEPS[1])
    if options.lr is not None and not (0 < options.lr <= 10):
        raise InvalidInputError(f"lr must be in (0, 10], got {options.lr}")
    if isinstance(options.seed, bool) or not isinstance(options.seed, int):
        raise InvalidInputError(f"seed must be an integer, got {options.seed!r}")


def _in_range(name: str, value, low: int, high: int, unit: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        unit = f" {unit}" if unit else ""
        raise InvalidInputError(f"{name} must be between {low} and {high}{unit}, got {value}")


def parse_prompt(
    prompt: str, negatives: Sequence[str] = ()
) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """'sea^2 | boat | people^-1' and negatives -> ([(text, weight > 0)], [(text, weight > 0)])."""
    from xmodal.engine.query import split_weight

    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidInputError("empty prompt: describe the image to generate")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InvalidInputError(
            f"the prompt is {len(prompt)} characters; at most {MAX_PROMPT_CHARS} are allowed"
        )
    if isinstance(negatives, str):
        negatives = [negatives]
    positive, negative = [], []
    for raw in prompt.split(TERM_SEPARATOR):
        text, weight = split_weight(raw.strip())
        _check_term(text, prompt)
        if weight == 0:
            continue
        (positive if weight > 0 else negative).append((text.strip(), abs(weight)))
    for raw in negatives:
        if not isinstance(raw, str) or not raw.strip():
            raise InvalidInputError("empty negative prompt: give the text to avoid")
        if len(raw) > MAX_PROMPT_CHARS:
            raise InvalidInputError(
                f"a negative prompt is {len(raw)} characters; at most {MAX_PROMPT_CHARS} are "
                "allowed"
            )
        text, weight = split_weight(raw.strip())
        _check_term(text, raw)
        negative.append((text.strip(), abs(weight)))
    if not positive:
        raise InvalidInputError("the prompt needs at least one term with a positive weight")
    return positive, negative


def _check_term(text: str, whole: str) -> None:
    if not text.strip():
        raise InvalidInputError(f"empty term in the prompt {whole!r}: remove the extra '|'")


def embed_prompt(
    encoder: Encoder, positive: list[tuple[str, float]], negative: list[tuple[str, float]]
) -> Prompt:
    from xmodal.engine.query import combine

    vectors = encoder.embed_texts([t for t, _ in positive])
    target = combine(vectors, [w for _, w in positive])
    avoid = []
    if negative:
        vecs = encoder.embed_texts([t for t, _ in negative])
        avoid = [(w, v) for (_, w), v in zip(negative, vecs)]
    return Prompt(target, avoid)


def _encoder(encoder: Encoder | str | None, device: str | None) -> Encoder:
    if isinstance(encoder, Encoder):
        return encoder
    if encoder is None:  # the configured default, as load_model has it
        from xmodal.config import get_settings

        encoder = get_settings().model
    if not isinstance(encoder, str):
        raise InvalidInputError(f"encoder must be a model name or an Encoder, got {encoder!r}")
    from xmodal.errors import UnsupportedModalityError
    from xmodal.models import load_model
    from xmodal.models.registry import parse_name

    if parse_name(encoder)[0] == "onnx":  # refused before its graphs load
        raise UnsupportedModalityError(
            f"{encoder} is an exported ONNX model: ONNX Runtime gives no gradients, and "
            "generation optimises the image by them. Generate with the model it was exported "
            "from (lite, openclip:..., hf:...)"
        )
    return load_model(encoder, device=device)


def _rgb(image) -> Image.Image:
    from xmodal.images import load_image

    return load_image(image)
