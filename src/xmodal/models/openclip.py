"""OpenCLIP models, through the open_clip library.

  openclip:ARCH/TAG               weights open_clip knows by tag (open_clip.list_pretrained())
  openclip:ARCH/path/to/file      a local checkpoint: .safetensors/.pt/.bin state dict, or an
                                  open_clip training checkpoint ("state_dict", "module." prefixes)
  openclip:hf-hub:ORG/REPO        an OpenCLIP repository on the Hugging Face hub
  openclip:ARCH/random            random weights, asked for by name (tests, training from scratch)

`openclip:ARCH` alone is refused: random weights would index a collection without a word of
warning, and find nothing.

Hub weights come from the local Hugging Face cache when they are there; otherwise the hub is probed
once and an offline machine gets a ModelLoadError within seconds instead of minutes of retries.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path

import numpy as np
import open_clip
import torch
from open_clip.constants import HF_CONFIG_NAME, HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME
from open_clip.pretrained import download_pretrained_from_hf
from open_clip.tokenizer import DEFAULT_CONTEXT_LENGTH, HFTokenizer
from PIL import Image

from xmodal.errors import ModelLoadError, ModelNotFoundError
from xmodal.models import hub, torch_int8
from xmodal.models.base import Encoder
from xmodal.models.device import autocast, torch_device
from xmodal.models.registry import ModelInfo, canonical_name

HF_HUB = "hf-hub:"
# The PRETRAINED value that asks for randomly initialised weights.
RANDOM = "random"

# open_clip preprocess_cfg resize_mode -> ours
_NATIVE_MODE = {"shortest": "crop", "longest": "pad", "squash": "squash"}
_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}
_TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json")
_HF_TOWER_HINT = (
    "Connect once so it is cached, or use an architecture whose text tower is open_clip's own "
    "(e.g. ViT-B-32)."
)
# Long state-dict mismatch reports list every key; the start says enough.
_MAX_CAUSE_CHARS = 300


class OpenClipEncoder(Encoder):
    def __init__(
        self,
        name: str,
        model: torch.nn.Module,
        tokenizer,
        embed_dim: int,
        device: torch.device,
        batch_size: int | None,
        resize_mode: str | None,
    ):
        self.name = name
        self.dim = embed_dim
        if batch_size is not None:
            self.batch_size = batch_size
        self.device = device
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.logit_scale = float(model.logit_scale.detach().exp())
        bias = getattr(model, "logit_bias", None)
        # SigLIP checkpoints learn a bias added to the scaled similarity before the sigmoid.
        self.logit_bias = None if bias is None else float(bias.detach())
        self._pixels = _image_batcher(model, resize_mode)

    def _encode_texts(self, texts: list[str]) -> np.ndarray:
        tokens = self.tokenizer(texts).to(self.device)
        with torch.inference_mode(), autocast(self.device):
            return self.model.encode_text(tokens).float().cpu().numpy()

    def prepare_image(self, image: Image.Image) -> np.ndarray:
        return self._pixels([image])[0]

    def _encode_prepared(self, prepared: list[np.ndarray]) -> np.ndarray:
        pixels = torch.from_numpy(np.stack(prepared)).to(self.device)
        with torch.inference_mode(), autocast(self.device):
            return self.model.encode_image(pixels).float().cpu().numpy()


def load(
    arg: str,
    *,
    device: str = "cpu",
    num_threads: int | None = None,
    batch_size: int | None = None,
    resize_mode: str | None = None,
    quantize: str | None = None,
) -> OpenClipEncoder:
    """`arg` follows 'openclip:'; resize_mode (crop, pad, squash) overrides the model's own.

    device: cpu, cuda, cuda:N, mps or auto (models/device.py); on CUDA inference runs in
    float16 autocast. quantize: "int8" for dynamic int8 Linear layers on the CPU (torch_int8.py).
    """
    where = torch_device(device)  # an unusable device fails before any weights load
    torch_int8.check_quantize(quantize, where)
    hub.set_num_threads(num_threads)
    hub.check_resize_mode(resize_mode)
    if arg.startswith(HF_HUB):
        model, tokenizer, embed_dim = _from_hub_repo(arg[len(HF_HUB) :], where)
    else:
        model, tokenizer, embed_dim = _from_arch(arg, where)
    # Named as a collection records it: a checkpoint path absolute, whatever the working folder.
    name = canonical_name(f"openclip:{arg}")
    encoder = OpenClipEncoder(name, model, tokenizer, embed_dim, where, batch_size, resize_mode)
    torch_int8.apply_option(encoder, quantize)
    return encoder


def list_models() -> list[ModelInfo]:
    """Every pretrained tag open_clip knows, available when its weights are in the local cache."""
    infos = []
    for arch, tag in open_clip.list_pretrained():
        config = open_clip.get_model_config(arch)
        cached = _cached_tag_weights(open_clip.get_pretrained_cfg(arch, tag)) is not None
        infos.append(
            ModelInfo(
                f"openclip:{arch}/{tag}",
                config["embed_dim"] if config else None,
                cached,
                "" if cached else "needs download",
            )
        )
    infos += [
        ModelInfo(
            "openclip:ARCH/path/to/checkpoint.safetensors",
            None,
            True,
            "any open_clip architecture with your own weights (.safetensors, .pt, .bin)",
        ),
        ModelInfo(
            f"openclip:ARCH/{RANDOM}",
            None,
            True,
            "random weights, only when asked for: tests and training from scratch",
        ),
        ModelInfo("openclip:hf-hub:ORG/REPO", None, True, "an OpenCLIP repository on the HF hub"),
    ]
    return infos


# -- loading ----------------------------------------------------------------------------------


def _from_arch(arg: str, device: torch.device):
    # Architecture names never contain "/", so everything after the first one is the tag or path.
    arch, _, pretrained = arg.partition("/")
    _check_arch(arch)
    if not pretrained:
        raise ModelNotFoundError(_no_weights_message(arch))
    model_cfg = open_clip.get_model_config(arch)
    _require_text_tower_config(model_cfg)
    tokenizer = _tokenizer(arch, model_cfg)
    if pretrained == RANDOM:
        # Random weights asked for: do not let a Hugging Face text tower fetch its own.
        model = _create(arch, f"random {arch}", device=device, pretrained_text=False)
    elif tag_cfg := open_clip.get_pretrained_cfg(arch, pretrained):
        weights = _tag_weights(arch, pretrained, tag_cfg)
        model = _create(
            arch,
            f"{arch}/{pretrained} weights {weights}",
            device=device,
            pretrained=weights,
            # The tag's preprocessing, as open_clip applies when given the tag itself.
            force_preprocess_cfg=tag_cfg,
            # Tags trained with QuickGELU (OpenAI's) are wrong without it; open_clip only warns.
            force_quick_gelu=bool(tag_cfg.get("quick_gelu")),
        )
    else:
        path = _checkpoint_file(arch, pretrained)
        model = _create(arch, f"checkpoint {path}", device=device, pretrained=str(path))
    return model, tokenizer, int(model_cfg["embed_dim"])


def _from_hub_repo(repo: str, device: torch.device):
    config_file, weights = _hub_repo_files(repo)
    with open(config_file, encoding="utf-8") as f:
        config = json.load(f)
    model_cfg = config.get("model_cfg", config)
    _require_text_tower_config(model_cfg)
    # The cached snapshot as a local folder: open_clip given "hf-hub:" would ask the hub again.
    local = f"local-dir:{os.path.dirname(config_file)}"
    tokenizer = _tokenizer(local, model_cfg)
    what = f"repository {repo} weights {weights}"
    model = _create(local, what, device=device, load_weights=False, pretrained_text=False)
    try:
        open_clip.load_checkpoint(model, weights)
    except Exception as e:  # safetensors, pickle, zip and state-dict errors all mean "unusable"
        raise ModelLoadError(
            f"could not load {what}: {_short(e)}. Delete it from the cache and retry"
        ) from e
    return model, tokenizer, int(model_cfg["embed_dim"])


def _hub_repo_files(repo: str) -> tuple[str, str]:
    """(config, weights) of an OpenCLIP hub repository: from the cache, else downloaded."""
    config_file, weights = hub.cached_file(repo, HF_CONFIG_NAME), _cached_repo_weights(repo)
    if config_file and weights:
        return config_file, weights
    hub.require_hub(
        f"open_clip repository {repo}",
        "Connect once to download it, or load a local checkpoint with "
        "openclip:ARCH/path/to/file.safetensors.",
    )
    try:
        config_file = download_pretrained_from_hf(repo, HF_CONFIG_NAME, cache_dir=hub.cache_dir())
        weights = download_pretrained_from_hf(repo, cache_dir=hub.cache_dir())
    except FileNotFoundError as e:  # how open_clip reports any hub error, missing repos included
        raise ModelLoadError(
            f"could not download {repo} as an OpenCLIP repository ({HF_CONFIG_NAME} and "
            f"{HF_SAFE_WEIGHTS_NAME} or {HF_WEIGHTS_NAME}): {_short(e)}. For a transformers "
            f"CLIP/SigLIP repository use hf:{repo}"
        ) from e
    return config_file, weights


def _no_weights_message(arch: str) -> str:
    tags = open_clip.list_pretrained_tags_by_model(arch)
    known = f"a pretrained tag ({', '.join(tags)})" if tags else "a pretrained tag (it has none)"
    return (
        f"openclip:{arch} names an architecture but no weights, and random weights index "
        f"nothing useful. Give {known} as openclip:{arch}/TAG, a local checkpoint as "
        f"openclip:{arch}/path/to/file.safetensors (or .pt, .bin), an OpenCLIP hub "
        f"repository as openclip:hf-hub:ORG/REPO, or a folder from `xmodal train` as its "
        f"path; for random weights on purpose (tests, training from scratch) say "
        f"openclip:{arch}/{RANDOM}"
    )


def _check_arch(arch: str) -> None:
    archs = open_clip.list_models()
    if arch in archs:
        return
    same_letters = [a for a in archs if a.lower() == arch.lower()]
    close = same_letters or difflib.get_close_matches(arch, archs, n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ModelNotFoundError(
        f"unknown open_clip architecture '{arch}'{hint}: `xmodal models` lists them, as does "
        "open_clip.list_models(); register a custom one with open_clip.add_model_config(path)"
    )


def _checkpoint_file(arch: str, pretrained: str) -> Path:
    path = Path(pretrained).expanduser()
    if path.is_dir():
        raise ModelNotFoundError(
            f"{path} is a folder: give the checkpoint file in it (.safetensors, .pt or .bin)"
        )
    if not path.is_file():
        tags = open_clip.list_pretrained_tags_by_model(arch)
        known = f"its tags are {', '.join(tags)}" if tags else "it has no pretrained tags"
        raise ModelNotFoundError(
            f"'{pretrained}' is neither a pretrained tag of {arch} ({known}) nor an existing "
            f"checkpoint file: check the path, e.g. openclip:{arch}/path/to/file.safetensors"
        )
    return path


def _tag_weights(arch: str, tag: str, tag_cfg: dict) -> str:
    """Local path of a tag's weights: from the cache, else downloaded if the hub can be reached."""
    cached = _cached_tag_weights(tag_cfg)
    if cached is not None:
        return cached
    hub.require_hub(
        f"the weights of {arch}/{tag} ({tag_cfg.get('hf_hub', '').rstrip('/')})",
        f"Connect once to download them, or pass a local checkpoint: "
        f"openclip:{arch}/path/to/file.safetensors.",
    )
    try:
        return open_clip.download_pretrained(tag_cfg, cache_dir=hub.cache_dir())
    except Exception as e:  # network and hub errors come in many types; all mean the same here
        raise ModelLoadError(
            f"downloading the weights of {arch}/{tag} failed: {_short(e)}. Try again, or pass a "
            f"local checkpoint: openclip:{arch}/path/to/file.safetensors"
        ) from e


def _create(open_clip_name: str, what: str, **kwargs) -> torch.nn.Module:
    try:
        return open_clip.create_model(open_clip_name, cache_dir=hub.cache_dir(), **kwargs)
    except Exception as e:  # safetensors, pickle, zip and state-dict errors all mean "unusable"
        raise ModelLoadError(
            f"could not load {what} as open_clip {open_clip_name}: {_short(e)}. Check that the "
            "file is complete and was saved from this architecture: a state dict saved with "
            "torch.save or safetensors, or an open_clip training checkpoint"
        ) from e


def _tokenizer(open_clip_name: str, model_cfg: dict):
    text_cfg = model_cfg.get("text_cfg", {})
    repo = text_cfg.get("hf_tokenizer_name")
    source = repo and _cached_snapshot(repo, _TOKENIZER_FILES)
    if repo and source is None:
        hub.require_hub(f"the tokenizer {repo}", _HF_TOWER_HINT)
    try:
        if not repo:
            return open_clip.get_tokenizer(open_clip_name, cache_dir=hub.cache_dir())
        # What open_clip.get_tokenizer builds, but from the cached folder when there is one:
        # given the repository name, transformers asks the hub first and retries for ~20 s offline.
        return HFTokenizer(
            source or repo,
            context_length=text_cfg.get("context_length", DEFAULT_CONTEXT_LENGTH),
            cache_dir=hub.cache_dir(),
            tokenizer_mode=text_cfg.get("tokenizer_mode"),
            **text_cfg.get("tokenizer_kwargs", {}),
        )
    except Exception as e:  # tokenizer files come from several libraries, each with its errors
        raise ModelLoadError(
            f"could not build the tokenizer of {open_clip_name}: {_short(e)}"
        ) from e


def _require_text_tower_config(model_cfg: dict) -> None:
    """Fail fast when a Hugging Face text tower's config must come from the hub and cannot."""
    repo = model_cfg.get("text_cfg", {}).get("hf_model_name")
    if repo and hub.cached_file(repo, "config.json") is None:
        hub.require_hub(f"the text tower config {repo}", _HF_TOWER_HINT)


# -- the local cache --------------------------------------------------------------------------


def _weight_files(filename: str) -> list[str]:
    """The files open_clip tries for a hub weight file name, safetensors first."""
    if not filename or filename == HF_WEIGHTS_NAME:
        return [HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME]
    stem, ext = os.path.splitext(filename)
    return [stem + ".safetensors", filename] if ext in (".bin", ".pth") else [filename]


def _first_cached(repo: str, files: list[str] | tuple[str, ...]) -> str | None:
    return next((p for f in files if (p := hub.cached_file(repo, f)) is not None), None)


def _cached_repo_weights(repo: str, filename: str = "") -> str | None:
    return _first_cached(repo, _weight_files(filename))


def _cached_snapshot(repo: str, files: tuple[str, ...]) -> str | None:
    """The cached snapshot folder of `repo` holding any of `files`."""
    path = _first_cached(repo, files)
    return None if path is None else os.path.dirname(path)


def _cached_tag_weights(tag_cfg: dict) -> str | None:
    # hf_hub is 'org/repo/' (default file name) or 'org/repo/file.bin'.
    repo, filename = os.path.split(tag_cfg.get("hf_hub", ""))
    return _cached_repo_weights(repo, filename) if repo else None


# -- images -----------------------------------------------------------------------------------


def _image_batcher(model: torch.nn.Module, resize_mode: str | None):
    cfg = open_clip.get_model_preprocess_cfg(model)
    size = cfg["size"]
    if not isinstance(size, int):
        if size[0] != size[1]:
            raise ModelLoadError(f"non-square model input {size} is not supported")
        size = size[0]
    fill = int(cfg.get("fill_color", 0))
    return hub.image_batcher(
        size,
        tuple(cfg["mean"]),
        tuple(cfg["std"]),
        _NATIVE_MODE[cfg.get("resize_mode", "shortest")],
        resize_mode,
        resample=_RESAMPLE.get(cfg.get("interpolation", "bicubic"), Image.Resampling.BICUBIC),
        pad_color=(fill, fill, fill),
    )


def _short(e: Exception) -> str:
    text = f"{type(e).__name__}: {e}"
    return text if len(text) <= _MAX_CAUSE_CHARS else text[:_MAX_CAUSE_CHARS] + "..."
