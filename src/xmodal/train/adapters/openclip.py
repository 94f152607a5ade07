"""Training OpenCLIP models: the final folder is an open_clip "local-dir" checkpoint
(open_clip_config.json + open_clip_model.safetensors), which open_clip itself can load too."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import open_clip
import torch
from open_clip.constants import HF_CONFIG_NAME, HF_SAFE_WEIGHTS_NAME
from open_clip.transformer import QuickGELU

from xmodal.errors import ModelLoadError
from xmodal.models import hub
from xmodal.models.openclip import HF_HUB, OpenClipEncoder
from xmodal.train.adapters.base import ClipModuleAdapter, Inputs, TowerParts

# Names across open_clip's towers: its own ViT and text transformer, the text tower of
# CustomTextCLIP models (under "text."), timm image trunks and Hugging Face text models.
TOWERS = {
    "image": TowerParts(
        heads=("visual.proj", "visual.head"),
        blocks=("visual.transformer.resblocks", "visual.trunk.blocks"),
        after_blocks=("visual.ln_post", "visual.attn_pool", "visual.trunk.norm"),
    ),
    "text": TowerParts(
        heads=("text_projection", "text.text_projection", "text.proj"),
        blocks=(
            "transformer.resblocks",
            "text.transformer.resblocks",
            "text.transformer.encoder.layer",
        ),
        after_blocks=("ln_final", "text.ln_final"),
    ),
}


class OpenClipAdapter(ClipModuleAdapter):
    backend = "openclip"
    towers = TOWERS

    def __init__(self, encoder: OpenClipEncoder, base: str):
        super().__init__(encoder, base)
        # SigLIP-style models score with a sigmoid and a learned bias; InfoNCE uses neither, so
        # their calibrated temperature and bias stay as they are.
        if getattr(self.module, "logit_bias", None) is not None:
            self.frozen = ("logit_scale", "logit_bias")

    def prepare_texts(self, texts: list[str]) -> Inputs:
        return self.encoder.tokenizer(texts)

    def image_features(self, inputs: Inputs) -> torch.Tensor:
        return self.module.encode_image(inputs)

    def text_features(self, inputs: Inputs) -> torch.Tensor:
        return self.module.encode_text(inputs)

    def save(self, folder: Path) -> None:
        from safetensors.torch import save_file

        config = {
            "model_cfg": _model_cfg(self.base, self.module),
            "preprocess_cfg": open_clip.get_model_preprocess_cfg(self.module),
        }
        (folder / HF_CONFIG_NAME).write_text(json.dumps(config, indent=2), encoding="utf-8")
        state = {k: v.detach().cpu().contiguous() for k, v in self.module.state_dict().items()}
        save_file(state, str(folder / HF_SAFE_WEIGHTS_NAME))


def _model_cfg(base: str, model: torch.nn.Module) -> dict:
    """The open_clip config that builds `model`: the architecture's (or hub repository's) own,
    plus quick_gelu where loading forced it, as it does for OpenAI's tags."""
    arg = base.partition(":")[2]
    if arg.startswith(HF_HUB):
        path = hub.cached_file(arg[len(HF_HUB) :], HF_CONFIG_NAME)
        if path is None:
            raise ModelLoadError(f"the open_clip config of {base} is no longer in the cache")
        config = json.loads(Path(path).read_text(encoding="utf-8"))
        cfg = config.get("model_cfg", config)
    else:
        cfg = open_clip.get_model_config(arg.partition("/")[0])
    cfg = copy.deepcopy(cfg)
    if any(isinstance(m, QuickGELU) for m in model.modules()):
        cfg["quick_gelu"] = True
    return cfg
