"""Model names -> encoders. Backends are described as data and imported only when used.

Names users type:
  lite, lite-en, ...        built-in offline models (see xmodal.models.lite.VARIANTS)
  openclip:ARCH/PRETRAINED  any OpenCLIP architecture; PRETRAINED is a tag, a checkpoint file, or
                            `random` for random weights on purpose (ARCH alone is refused)
  hf:REPO_OR_DIR            a Hugging Face CLIPModel / SiglipModel checkpoint
  onnx:DIR                  a model written by `xmodal export onnx` (ONNX Runtime, no torch)
  path/to/folder            a model written by `xmodal train` (a folder with xmodal-model.json)
  fake[:DIM]                a deterministic fake, for tests
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from xmodal.errors import (
    InvalidInputError,
    MissingExtraError,
    ModelLoadError,
    ModelNotFoundError,
)
from xmodal.models.base import Encoder

# The card that makes a folder a trained model (see xmodal.models.trained).
TRAINED_CARD = "xmodal-model.json"
# The card that makes a folder an exported ONNX model (see xmodal.models.exported.card).
ONNX_CARD = "xmodal-onnx.json"


@dataclass(frozen=True)
class Backend:
    prefix: str
    module: str  # exposes load(arg, **options) -> Encoder and list_models() -> list[ModelInfo]
    requires: str | None  # third-party module the backend imports
    extra: str | None  # pip extra that installs it
    summary: str


@dataclass(frozen=True)
class ModelInfo:
    name: str
    dim: int | None
    available: bool
    note: str = ""


BACKENDS: dict[str, Backend] = {
    b.prefix: b
    for b in [
        Backend("lite", "xmodal.models.lite", None, None, "built-in offline model"),
        Backend("openclip", "xmodal.models.openclip", "open_clip", "clip", "OpenCLIP models"),
        Backend("hf", "xmodal.models.hf", "transformers", "hf", "Hugging Face CLIP/SigLIP/CLAP"),
        Backend("onnx", "xmodal.models.exported", "onnxruntime", None, "exported ONNX models"),
        Backend("fake", "xmodal.models.fake", None, None, "deterministic fake for tests"),
        Backend("trained", "xmodal.models.trained", None, None, "models from `xmodal train`"),
    ]
}


# Backends that run on torch, where XMODAL_QUANTIZE=int8 applies.
_QUANTIZABLE = ("lite", "openclip", "hf", "trained")


def check_card(raw, path: Path, fmt: str, max_version: int, what: str) -> None:
    """ModelLoadError unless `raw` (a parsed card) is a `fmt` card this xmodal can read."""
    if not isinstance(raw, dict) or raw.get("format") != fmt:
        raise ModelLoadError(f"{path} is not an xmodal {what} (format {fmt!r})")
    version = raw.get("format_version")
    if not isinstance(version, int) or version > max_version:
        raise ModelLoadError(
            f"{path} is format version {version}; this xmodal reads versions up to "
            f"{max_version}: upgrade xmodal"
        )


def parse_name(name: str) -> tuple[str, str]:
    """'openclip:ViT-B-32/tag' -> ('openclip', 'ViT-B-32/tag'); 'lite' -> ('lite', 'lite')"""
    name = name.strip()
    if not name:
        raise InvalidInputError("empty model name")
    folder = Path(name).expanduser()
    if (folder / TRAINED_CARD).is_file():
        return "trained", name
    if (folder / ONNX_CARD).is_file():
        return "onnx", name
    prefix, sep, arg = name.partition(":")
    if sep and prefix in BACKENDS:
        if not arg:
            raise InvalidInputError(f"model name '{name}' needs something after '{prefix}:'")
        return prefix, arg
    if name == "fake":
        return "fake", ""
    if name.startswith("lite"):
        return "lite", name
    if folder.is_dir():
        raise ModelNotFoundError(
            f"folder '{name}' holds no {TRAINED_CARD}, so it is not a model from `xmodal train`; "
            f"a transformers folder loads as hf:{name}"
        )
    raise ModelNotFoundError(
        f"unknown model '{name}': use lite, openclip:ARCH/PRETRAINED or hf:REPO_OR_DIR "
        "(xmodal models lists them)"
    )


def canonical_name(name: str) -> str:
    """The name a collection records for `name`: local paths in it (a trained-model folder, an
    openclip checkpoint file, an hf folder) become absolute, so the collection opens from any
    working directory; other names (tags, hub repositories) are kept as typed."""
    prefix, arg = parse_name(name)
    if prefix == "trained":
        return _absolute(arg)
    if prefix == "openclip" and not arg.startswith("hf-hub:"):
        arch, sep, pretrained = arg.partition("/")
        if sep and Path(pretrained).expanduser().is_file():
            return f"openclip:{arch}/{_absolute(pretrained)}"
    if prefix in ("hf", "onnx") and Path(arg).expanduser().is_dir():
        return f"{prefix}:{_absolute(arg)}"
    return name.strip()


def _absolute(path: str) -> str:
    return str(Path(path).expanduser().resolve())


def _backend_module(backend: Backend):
    if backend.requires is not None:
        try:
            importlib.import_module(backend.requires)
        except ImportError as e:
            raise MissingExtraError(
                f"the {backend.prefix} backend", backend.extra or "all", backend.requires
            ) from e
    return importlib.import_module(backend.module)


def load_model(name: str | None = None, *, device: str | None = None, **options) -> Encoder:
    """Load an encoder by name; None means the configured default (XMODAL_MODEL or 'lite').

    device: cpu, cuda, cuda:N, mps or auto; None means XMODAL_DEVICE, else cpu. An unusable
    device raises DeviceError before any weights load. quantize="int8" (or XMODAL_QUANTIZE)
    quantises a torch backend's Linear layers, checked against fp32 (models/torch_int8.py).
    """
    from xmodal.models.device import resolve_device

    if name is None:
        from xmodal.config import get_settings

        name = get_settings().model
    prefix, arg = parse_name(name)
    module = _backend_module(BACKENDS[prefix])
    from xmodal.config import get_settings

    settings = get_settings()
    if options.get("num_threads") is None:  # XMODAL_NUM_THREADS unless the caller chose
        options["num_threads"] = settings.num_threads
    if options.get("quantize") is None and settings.quantize and prefix in _QUANTIZABLE:
        options["quantize"] = settings.quantize  # XMODAL_QUANTIZE, for the torch backends
    return module.load(arg, device=resolve_device(device), **options)


def list_models() -> list[ModelInfo]:
    """Every name a user can type, with its dimension and whether it can load right now."""
    infos: list[ModelInfo] = []
    for backend in BACKENDS.values():
        if backend.prefix == "fake":
            continue
        try:
            module = _backend_module(backend)
        except MissingExtraError as e:
            infos.append(ModelInfo(f"{backend.prefix}:...", None, False, str(e)))
            continue
        infos.extend(module.list_models())
    return infos
