"""Training the built-in lite model: its alignment head only (xmodal.models.lite.head).

lite's towers stay frozen: the e5 text tower is a 4-bit C engine with no gradients, and the image
tower reaches the shared space through ConSE's fixed class texts, so the head on top of the
image vectors is the one trainable part. Both sides are computed once (ConSE vectors before the
head, text vectors), so an epoch is a few small matrix products and takes seconds.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch
from PIL import Image

from xmodal.errors import InvalidInputError
from xmodal.models.lite.conse import LiteEncoder
from xmodal.models.lite.head import AlignmentHead, save_head
from xmodal.train.adapters.base import Inputs, TrainAdapter
from xmodal.train.config import TrainMode


class _LiteTrainable(torch.nn.Module):
    def __init__(self, head: AlignmentHead, log_scale: float):
        super().__init__()
        self.head = head
        self.log_scale = torch.nn.Parameter(torch.tensor(log_scale, dtype=torch.float32))


class LiteAdapter(TrainAdapter):
    backend = "lite"
    heads_name = "the alignment head on image vectors"

    def __init__(self, encoder: LiteEncoder, base: str):
        self.encoder = encoder
        self.base = base
        # A variant that ships a head is fine-tuned from it; otherwise from the identity.
        if encoder.head is not None:
            head = copy.deepcopy(encoder.head)
        else:
            head = AlignmentHead(encoder.dim)
        # Start from the variant's calibrated temperature: the head learns its own from there.
        self.module = _LiteTrainable(head, math.log(encoder.logit_scale))

    @property
    def head(self) -> AlignmentHead:
        return self.module.head

    @property
    def log_scale(self) -> torch.Tensor:
        return self.module.log_scale

    def trainable_names(self, mode: TrainMode) -> list[str]:
        if mode.kind != "heads":
            raise InvalidInputError(
                f"{self.base} trains its alignment head only (--mode heads): its towers are "
                "frozen (the e5 text tower is a 4-bit C engine, and images reach the shared "
                "space through fixed class texts). To train towers, fine-tune an openclip: or "
                "hf: model"
            )
        return [n for n, _ in self.module.named_parameters()]

    def prepare_images(self, images: list[Image.Image]) -> torch.Tensor:
        prepared = [self.encoder.prepare_image(im) for im in images]
        return torch.from_numpy(self.encoder.conse_vectors(prepared))

    def prepare_texts(self, texts: list[str]) -> Inputs:
        return torch.from_numpy(self.encoder.embed_texts(texts))

    def image_features(self, inputs: Inputs) -> torch.Tensor:
        return self.head(inputs)

    def text_features(self, inputs: Inputs) -> torch.Tensor:
        return inputs

    def save(self, folder: Path) -> None:
        save_head(self.head, folder)
