"""Hugging Face transformers CLIP, SigLIP and CLAP checkpoints: hf:REPO_OR_DIR.

REPO_OR_DIR is a folder written by `model.save_pretrained(dir)` plus the tokenizer's and image
processor's `save_pretrained(dir)`, or a hub repository id (openai/clip-vit-base-patch32). A hub
repository loads from the local cache when it is there, without asking the hub; otherwise the hub
is probed once and an offline machine gets a ModelLoadError within seconds, not after retries.

SigLIP 2 "FixRes" checkpoints (google/siglip2-base-patch16-224) are SigLIP checkpoints and load as
such; the variable-resolution "NaFlex" ones (model_type siglip2) are refused with a message.
CLAP checkpoints (text and sound, a feature extractor instead of an image processor) load here
and are served by hf_clap.ClapEncoder.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoImageProcessor,
    AutoTokenizer,
    ClapModel,
    CLIPModel,
    SiglipModel,
)

from xmodal.errors import ModelLoadError, ModelNotFoundError
from xmodal.models import hf_clap, hub, torch_int8
from xmodal.models.base import Encoder
from xmodal.models.device import autocast, torch_device
from xmodal.models.registry import ModelInfo, canonical_name

# model_type in config.json -> the class that loads it
_MODEL_CLASSES = {"clip": CLIPModel, "siglip": SiglipModel, hf_clap.MODEL_TYPE: ClapModel}

# Repositories users ask for by name, with their embedding size.
WELL_KNOWN: dict[str, int] = {
    "openai/clip-vit-base-patch32": 512,
    "openai/clip-vit-base-patch16": 512,
    "openai/clip-vit-large-patch14": 768,
    "openai/clip-vit-large-patch14-336": 768,
    "laion/CLIP-ViT-B-32-laion2B-s34B-b79K": 512,
    "google/siglip-base-patch16-224": 768,
    "google/siglip-so400m-patch14-384": 1152,
    "google/siglip2-base-patch16-224": 768,
    "laion/clap-htsat-unfused": 512,
    "laion/larger_clap_general": 512,
    "laion/larger_clap_music_and_speech": 512,
}
_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# A hub id is "name" or "org/name"; anything else can only be a path.
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_SAVE_HINT = (
    "save the model with model.save_pretrained(DIR), tokenizer.save_pretrained(DIR) and "
    "image_processor.save_pretrained(DIR), then use hf:DIR"
)


class HFEncoder(Encoder):
    def __init__(
        self,
        name: str,
        model: torch.nn.Module,
        tokenizer,
        image_processor,
        device: torch.device,
        batch_size: int | None,
        resize_mode: str | None,
    ):
        config = model.config
        self.name = name
        self.kind = config.model_type
        if batch_size is not None:
            self.batch_size = batch_size
        self.device = device
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        text_config = config.text_config
        if self.kind == "clip":
            self.dim = int(config.projection_dim)
            self.logit_bias = None
        else:
            # SigLIP has no separate projection: the text head maps to the shared width.
            self.dim = int(getattr(text_config, "projection_size", None) or text_config.hidden_size)
            self.logit_bias = float(model.logit_bias.detach())
        self.logit_scale = float(model.logit_scale.detach().exp())
        self._max_length = int(text_config.max_position_embeddings)
        self._pixels = _image_batcher(image_processor, resize_mode, self.name)

    def _encode_texts(self, texts: list[str]) -> np.ndarray:
        siglip = self.kind == "siglip"
        inputs = self.tokenizer(
            texts,
            # SigLIP was trained on texts padded to full length, without an attention mask,
            # and pools the last position; CLIP pools at the end-of-text token.
            padding="max_length" if siglip else True,
            truncation=True,
            max_length=self._max_length,
            return_tensors="pt",
        )
        keep = ("input_ids",) if siglip else ("input_ids", "attention_mask")
        inputs = {k: inputs[k].to(self.device) for k in keep}
        with torch.inference_mode(), autocast(self.device):
            return _features(self.model.get_text_features(**inputs))

    def prepare_image(self, image: Image.Image) -> np.ndarray:
        return self._pixels([image])[0]

    def _encode_prepared(self, prepared: list[np.ndarray]) -> np.ndarray:
        pixels = torch.from_numpy(np.stack(prepared)).to(self.device)
        with torch.inference_mode(), autocast(self.device):
            return _features(self.model.get_image_features(pixel_values=pixels))


def load(
    arg: str,
    *,
    device: str = "cpu",
    num_threads: int | None = None,
    batch_size: int | None = None,
    resize_mode: str | None = None,
    quantize: str | None = None,
) -> Encoder:
    """`arg` follows 'hf:'; resize_mode (crop, pad, squash) overrides the checkpoint's own.

    device: cpu, cuda, cuda:N, mps or auto (models/device.py); on CUDA inference runs in
    float16 autocast. quantize: "int8" for dynamic int8 Linear layers on the CPU (torch_int8.py).
    """
    where = torch_device(device)  # an unusable device fails before any weights load
    torch_int8.check_quantize(quantize, where)
    hub.set_num_threads(num_threads)
    hub.check_resize_mode(resize_mode)
    folder = Path(arg).expanduser()
    if folder.is_dir():
        parts = _load_parts(str(folder), arg)
    elif folder.exists():
        raise ModelNotFoundError(
            f"{arg} is a file; hf: takes a folder or a hub repository: {_SAVE_HINT}"
        )
    elif not _REPO_ID.match(arg):
        raise ModelNotFoundError(f"folder {arg} does not exist: check the path, or {_SAVE_HINT}")
    else:
        parts = _load_from_hub(arg)
    model, tokenizer, image_processor = parts
    # Named as a collection records it: a folder absolute, whatever the working folder.
    name = canonical_name(f"hf:{arg}")
    if model.config.model_type == hf_clap.MODEL_TYPE:
        hf_clap.check_quantize(name, quantize)
        return hf_clap.ClapEncoder(name, model, tokenizer, image_processor, where, batch_size)
    encoder = HFEncoder(name, model, tokenizer, image_processor, where, batch_size, resize_mode)
    torch_int8.apply_option(encoder, quantize)
    return encoder


def list_models() -> list[ModelInfo]:
    """Well-known repositories, CLIP/SigLIP/CLAP repositories in the local cache, local folders."""
    infos = []
    for repo, dim in WELL_KNOWN.items():
        cached = _is_cached(repo)
        infos.append(ModelInfo(f"hf:{repo}", dim, cached, "" if cached else "needs download"))
    infos += [
        ModelInfo(f"hf:{repo}", dim, True, f"{kind}, in the local cache")
        for repo, kind, dim in _cached_repos()
        if repo not in WELL_KNOWN
    ]
    infos.append(
        ModelInfo(
            "hf:path/to/folder", None, True, "a CLIP/SigLIP/CLAP folder saved with save_pretrained"
        )
    )
    return infos


# -- loading ----------------------------------------------------------------------------------


def _load_from_hub(repo: str):
    try:
        return _load_parts(repo, repo, local_files_only=True)
    except OSError:  # transformers' "not in the cache"; anything else is a real problem
        pass
    hub.require_hub(
        repo, f"Connect once to download it, or {_SAVE_HINT} (there is no folder {repo} here)."
    )
    return _load_parts(repo, repo, local_files_only=False)


def _load_parts(source: str, arg: str, local_files_only: bool = True):
    """(model, tokenizer, image processor) from a folder or repository id."""
    common = {"cache_dir": hub.cache_dir(), "local_files_only": local_files_only}
    try:
        config = AutoConfig.from_pretrained(source, **common)
    except ValueError as e:  # a config.json without a model_type transformers knows
        raise ModelLoadError(
            f"{arg} is not a transformers checkpoint ({str(e)[:300]}): {_SAVE_HINT}"
        ) from e
    except OSError as e:
        if local_files_only and not Path(source).is_dir():
            raise  # not cached: the caller decides whether to download
        raise _not_loadable(arg, e) from e
    model_class = _MODEL_CLASSES.get(config.model_type)
    if model_class is None:
        hint = " (NaFlex SigLIP 2 is not supported yet)" if config.model_type == "siglip2" else ""
        raise ModelLoadError(
            f"{arg} is a '{config.model_type}' model{hint}; hf: loads CLIP, SigLIP and CLAP "
            f"checkpoints ({', '.join(_MODEL_CLASSES)}): for OpenCLIP use openclip:ARCH/FILE"
        )
    try:
        model, info = model_class.from_pretrained(
            source, dtype=torch.float32, output_loading_info=True, **common
        )
        tokenizer = AutoTokenizer.from_pretrained(source, **common)
        # CLAP hears instead of seeing: its preprocessor is an audio feature extractor.
        processor = AutoFeatureExtractor if model_class is ClapModel else AutoImageProcessor
        image_processor = processor.from_pretrained(source, **common)
    except OSError as e:
        if local_files_only and not Path(source).is_dir():
            raise
        raise _not_loadable(arg, e) from e
    except ImportError as e:  # e.g. SigLIP's sentencepiece tokenizer without `sentencepiece`
        raise ModelLoadError(f"loading {arg} needs a package that is not installed: {e}") from e
    except Exception as e:  # safetensors, pickle and shape errors all mean "unusable checkpoint"
        raise _not_loadable(arg, e) from e
    _refuse_random_weights(model, info, arg)
    return model, tokenizer, image_processor


def _refuse_random_weights(model, info: dict, arg: str) -> None:
    """transformers fills weights a checkpoint lacks with random ones and only logs it; a folder
    whose weights are partial (or saved from another model) would embed noise."""
    buffers = {name for name, _ in model.named_buffers()}
    missing = sorted(set(info.get("missing_keys", ())) - buffers)
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" * (len(missing) > 3))
        raise ModelLoadError(
            f"{arg}: its weights lack {len(missing)} tensor(s) of the {model.config.model_type} "
            f"model ({shown}), which would be random. Save the whole model: {_SAVE_HINT}"
        )


def _not_loadable(arg: str, e: Exception) -> ModelLoadError | ModelNotFoundError:
    if hub.repository_missing(e):
        return ModelNotFoundError(
            f"no repository {arg} on the hub: check the name, or {_SAVE_HINT}"
        )
    return ModelLoadError(
        f"could not load {arg}: {type(e).__name__}: {str(e)[:300]}. Check that it holds "
        f"config.json, the weights, the tokenizer and preprocessor_config.json: {_SAVE_HINT}"
    )


def _features(output) -> np.ndarray:
    # transformers 5 returns a model output whose pooler_output holds the projected features;
    # earlier versions return the tensor itself.
    tensor = output if isinstance(output, torch.Tensor) else output.pooler_output
    return tensor.float().cpu().numpy()


# -- images -----------------------------------------------------------------------------------


def _image_batcher(image_processor, resize_mode: str | None, name: str):
    """Our transform with the processor's numbers: CLIP resizes the shorter side and crops,
    SigLIP resizes straight to the square."""
    size = image_processor.size
    crop_from = None
    if getattr(image_processor, "do_center_crop", False):
        crop = image_processor.crop_size
        crop_from = size.shortest_edge
        if crop.height != crop.width or crop_from is None or crop_from < crop.height:
            raise ModelLoadError(
                f"{name}: resizing to {size} then cropping {crop.height}x{crop.width} is not "
                "supported; a square crop from a resized shorter side at least as long is"
            )
        side, native = crop.height, "crop"
    else:
        if size.height is None or size.height != size.width:
            raise ModelLoadError(f"{name}: image size {size} is not a fixed square")
        side, native = size.height, "squash"
    if image_processor.do_normalize:
        mean, std = tuple(image_processor.image_mean), tuple(image_processor.image_std)
    else:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    return hub.image_batcher(
        int(side),
        mean,
        std,
        native,
        resize_mode,
        resample=Image.Resampling(image_processor.resample),
        crop_from=crop_from,
    )


# -- the local cache --------------------------------------------------------------------------


def _is_cached(repo: str) -> bool:
    return hub.cached_file(repo, "config.json") is not None and any(
        hub.cached_file(repo, f) is not None for f in _WEIGHT_FILES
    )


def _cached_repos() -> list[tuple[str, str, int | None]]:
    """(repo, model_type, dim) of every cached CLIP/SigLIP/CLAP model repository; never raises."""
    from huggingface_hub import scan_cache_dir

    try:
        repos = scan_cache_dir(hub.cache_dir()).repos
    except Exception:  # no cache yet, or one we cannot read: nothing to list
        return []
    found = []
    for repo in repos:
        if repo.repo_type != "model" or not _is_cached(repo.repo_id):
            continue
        try:
            with open(hub.cached_file(repo.repo_id, "config.json"), encoding="utf-8") as f:
                config = json.load(f)
        except (OSError, ValueError):
            continue
        kind = config.get("model_type")
        if kind in _MODEL_CLASSES:
            found.append((repo.repo_id, kind, _config_dim(config)))
    return found


def _config_dim(config: dict) -> int | None:
    if config.get("model_type") in ("clip", hf_clap.MODEL_TYPE):
        return config.get("projection_dim", 512)
    text = config.get("text_config", {})
    return text.get("projection_size") or text.get("hidden_size")
