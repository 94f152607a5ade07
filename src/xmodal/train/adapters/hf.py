"""Training Hugging Face CLIP and SigLIP models: the final folder is a save_pretrained folder
(model, tokenizer, image processor), loadable by transformers and by `hf:DIR` as well."""

from __future__ import annotations

from pathlib import Path

import torch

from xmodal.models import hub
from xmodal.models.hf import HFEncoder
from xmodal.train.adapters.base import ClipModuleAdapter, Inputs, TowerParts

TOWERS = {
    # CLIP projects with visual_projection / text_projection; SigLIP has no projection but a
    # head on each tower (attention pooling on images, a linear layer on text).
    "image": TowerParts(
        heads=("visual_projection", "vision_model.head"),
        blocks=("vision_model.encoder.layers",),
        after_blocks=("vision_model.post_layernorm",),
    ),
    "text": TowerParts(
        heads=("text_projection", "text_model.head"),
        blocks=("text_model.encoder.layers",),
        after_blocks=("text_model.final_layer_norm",),
    ),
}


class HFAdapter(ClipModuleAdapter):
    backend = "hf"
    towers = TOWERS

    def __init__(self, encoder: HFEncoder, base: str):
        super().__init__(encoder, base)
        self.siglip = encoder.kind == "siglip"
        if self.siglip:
            # SigLIP's temperature and bias are calibrated for its sigmoid; InfoNCE uses the
            # temperature as it is and has no use for the bias.
            self.frozen = ("logit_scale", "logit_bias")

    def prepare_texts(self, texts: list[str]) -> Inputs:
        # As HFEncoder embeds: SigLIP padded to full length without a mask, CLIP to the longest
        # text (here of the whole set) with one.
        config = self.module.config.text_config
        tokens = self.encoder.tokenizer(
            texts,
            padding="max_length" if self.siglip else True,
            truncation=True,
            max_length=int(config.max_position_embeddings),
            return_tensors="pt",
        )
        keep = ("input_ids",) if self.siglip else ("input_ids", "attention_mask")
        return {k: tokens[k] for k in keep}

    def image_features(self, inputs: Inputs) -> torch.Tensor:
        return _tensor(self.module.get_image_features(pixel_values=inputs))

    def text_features(self, inputs: Inputs) -> torch.Tensor:
        return _tensor(self.module.get_text_features(**inputs))

    def save(self, folder: Path) -> None:
        from transformers import AutoImageProcessor
        from transformers.utils import logging as hf_logging

        # Library code stays quiet: no "Writing model shards" bar, the user's setting restored.
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            self.module.save_pretrained(folder)  # safetensors
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        self.encoder.tokenizer.save_pretrained(folder)
        # HFEncoder keeps only the numbers of its image processor: read it again from where
        # the base model was loaded (a folder, or the cache), which is local by now.
        source = self.base.partition(":")[2]
        AutoImageProcessor.from_pretrained(
            source, cache_dir=hub.cache_dir(), local_files_only=True
        ).save_pretrained(folder)


def _tensor(output) -> torch.Tensor:
    # transformers 5 returns a model output holding the projected features in pooler_output;
    # earlier versions return the tensor itself.
    return output if isinstance(output, torch.Tensor) else output.pooler_output
