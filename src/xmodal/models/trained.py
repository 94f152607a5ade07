"""Models written by `xmodal train`: a folder holding xmodal-model.json (the card) and weights.

The card names the backend and base model; the weights are in that backend's own format:
  lite      head.safetensors + head.json, the alignment head put on the base lite variant
  openclip  open_clip_config.json + open_clip_model.safetensors (open_clip's "local-dir" layout)
  hf        a save_pretrained folder: config.json, model.safetensors, tokenizer, image processor
Any of these names, as a path to the folder, works wherever a model name does (`--model DIR`).
"""

from __future__ import annotations

import json
from pathlib import Path

from xmodal.errors import ModelLoadError, ModelNotFoundError
from xmodal.models.base import Encoder
from xmodal.models.device import resolve_device
from xmodal.models.registry import TRAINED_CARD, ModelInfo, check_card

FORMAT = "xmodal-trained-model"
FORMAT_VERSION = 1
# A mismatch report names this many tensors; the rest is noise.
_SHOWN = 3


def read_card(folder: str | Path) -> dict:
    """The card of a trained-model folder; ModelLoadError when it is unreadable or too new."""
    path = Path(folder) / TRAINED_CARD
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ModelLoadError(f"cannot read the model card {path}: {e}") from e
    check_card(card, path, FORMAT, FORMAT_VERSION, "model card")
    missing = [k for k in ("backend", "base_model", "dim") if k not in card]
    if missing:
        raise ModelLoadError(f"{path} lacks {', '.join(missing)}")
    return card


def load(arg: str, **options) -> Encoder:
    """The trained model in folder `arg`, on the base model's backend with the trained weights."""
    folder = Path(arg).expanduser()
    if not (folder / TRAINED_CARD).is_file():
        raise ModelNotFoundError(
            f"{arg} is not a folder written by `xmodal train` (no {TRAINED_CARD} in it)"
        )
    card = read_card(folder)
    # Before the weights: an unusable device fails first; "auto" becomes a concrete one.
    options["device"] = resolve_device(options.get("device"))
    loader = _LOADERS.get(card["backend"])
    if loader is None:
        raise ModelLoadError(
            f"{arg}: unknown backend {card['backend']!r} in its card (this xmodal knows "
            f"{', '.join(_LOADERS)})"
        )
    encoder = loader(folder, card, **options)
    if encoder.dim != card["dim"]:
        raise ModelLoadError(
            f"{arg}: its weights give {encoder.dim}-d vectors but the card says {card['dim']}-d: "
            f"the weights do not belong to the base model {card['base_model']}"
        )
    encoder.name = str(folder.resolve())  # what a collection records
    return encoder


def list_models() -> list[ModelInfo]:
    return [ModelInfo("path/to/folder", None, True, "a model trained by `xmodal train`")]


def _lite(folder: Path, card: dict, **options) -> Encoder:
    from xmodal.models.lite import VARIANTS
    from xmodal.models.lite.conse import LiteEncoder
    from xmodal.models.lite.head import load_head

    variant = VARIANTS.get(card["base_model"])
    if variant is None:
        raise ModelLoadError(
            f"{folder} was trained from {card['base_model']}, which this xmodal does not have "
            f"(it has {', '.join(VARIANTS)})"
        )
    head = load_head(folder)
    if head.dim != variant.dim:
        raise ModelLoadError(
            f"{folder}: its head is {head.dim}-d but {variant.name} vectors are "
            f"{variant.dim}-d: the weights do not belong to the base model"
        )
    encoder = LiteEncoder(variant, head=head, **options)
    encoder.logit_scale = float(card.get("logit_scale", variant.logit_scale))
    return encoder


def _openclip(
    folder: Path,
    card: dict,
    *,
    device: str = "cpu",
    num_threads: int | None = None,
    batch_size: int | None = None,
    resize_mode: str | None = None,
    quantize: str | None = None,
) -> Encoder:
    from open_clip.constants import HF_CONFIG_NAME, HF_SAFE_WEIGHTS_NAME

    from xmodal.models import hub, torch_int8
    from xmodal.models import openclip as backend
    from xmodal.models.device import torch_device as resolve

    torch_device = resolve(device)
    torch_int8.check_quantize(quantize, torch_device)
    hub.set_num_threads(num_threads)
    hub.check_resize_mode(resize_mode)
    try:
        model_cfg = json.loads((folder / HF_CONFIG_NAME).read_text(encoding="utf-8"))["model_cfg"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        raise ModelLoadError(f"cannot read the open_clip config in {folder}: {e}") from e
    backend._require_text_tower_config(model_cfg)
    local = f"local-dir:{folder}"
    tokenizer = backend._tokenizer(local, model_cfg)
    what = f"the trained model {folder}"
    model = backend._create(
        local, what, device=torch_device, load_weights=False, pretrained_text=False
    )
    weights = folder / HF_SAFE_WEIGHTS_NAME
    _check_weights(model, _shapes([weights]), folder, card)
    from safetensors.torch import load_file

    model.load_state_dict(load_file(weights, device=str(torch_device)))
    encoder = backend.OpenClipEncoder(
        str(folder),
        model,
        tokenizer,
        int(model_cfg["embed_dim"]),
        torch_device,
        batch_size,
        resize_mode,
    )
    torch_int8.apply_option(encoder, quantize)
    return encoder


def _hf(folder: Path, card: dict, *, quantize: str | None = None, **options) -> Encoder:
    from xmodal.models import hf, torch_int8

    torch_int8.check_quantize(quantize, options.get("device", "cpu"))
    # Quantised after the weight check below: int8 layers no longer have the saved tensors.
    encoder = hf.load(str(folder), **options)
    # transformers fills missing weights with random ones and only logs it: check ourselves.
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        files = sorted({folder / f for f in json.loads(index.read_text())["weight_map"].values()})
    else:
        files = [folder / "model.safetensors"]
    _check_weights(encoder.model, _shapes(files), folder, card)
    torch_int8.apply_option(encoder, quantize)
    return encoder


def _shapes(files: list[Path]) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape in safetensors files, read from their headers only."""
    from safetensors import SafetensorError, safe_open

    shapes = {}
    for file in files:
        try:
            with safe_open(str(file), framework="pt") as f:
                names = f.keys()
                shapes.update({k: tuple(f.get_slice(k).get_shape()) for k in names})
        except (OSError, SafetensorError) as e:
            raise ModelLoadError(f"cannot read the weights {file}: {e}") from e
    return shapes


def _check_weights(model, shapes: dict[str, tuple[int, ...]], folder: Path, card: dict) -> None:
    """ModelLoadError naming what differs when the saved tensors are not the model's."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    params = {k for k, _ in model.named_parameters()}
    problems = []
    for what, names in (
        ("missing", [k for k in params if k not in shapes]),
        ("wrong shape", [k for k in expected if k in shapes and shapes[k] != expected[k]]),
        ("unexpected", [k for k in shapes if k not in expected]),
    ):
        if names:
            more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
            problems.append(f"{what}: {', '.join(names[:_SHOWN])}{more}")
    if problems:
        raise ModelLoadError(
            f"{folder}: the weights do not match the base model {card['base_model']} "
            f"({'; '.join(problems)}); was the folder changed by hand? Train it again"
        )


_LOADERS = {"lite": _lite, "openclip": _openclip, "hf": _hf}
