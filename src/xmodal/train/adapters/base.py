"""The contract between the trainer and a model backend.

The trainer knows nothing about towers or tokenizers. An adapter gives it:
  - `module`: one torch module holding every weight that may train, the log temperature included;
  - `trainable_names(mode)`: which of its parameters train in a mode (heads, blocks, all);
  - `prepare_images` / `prepare_texts`: model inputs computed once before training (pixels and
    token ids, or cached vectors where a tower is frozen), as row-indexable tensors;
  - `image_features` / `text_features`: a differentiable forward on a batch of those rows;
  - `save(folder)`: the trained weights in a form the matching loader in
    xmodal.models.trained reads back.

Backends that follow the usual CLIP layout describe their towers as data (`TowerParts`), and the
parameter choice is made here once.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from PIL import Image

from xmodal.errors import InvalidInputError
from xmodal.models.base import Encoder
from xmodal.train.config import TrainMode

Inputs = torch.Tensor | dict[str, torch.Tensor]


@dataclass(frozen=True)
class TowerParts:
    """Parameter-name prefixes of one tower: its projection head, its stack of blocks (followed
    by the block number) and the layers between the last block and the head (final norms)."""

    heads: tuple[str, ...]
    blocks: tuple[str, ...]
    after_blocks: tuple[str, ...] = ()


class TrainAdapter(ABC):
    backend: str  # the registry prefix the base model loaded through
    base: str  # the base model's name, as given
    encoder: Encoder
    module: torch.nn.Module
    towers: ClassVar[dict[str, TowerParts]] = {}
    # Parameters that never train here (e.g. SigLIP's logit bias, which InfoNCE does not use).
    frozen: tuple[str, ...] = ()
    heads_name = "projection heads"  # what "heads" trains, in words for the model card

    @property
    @abstractmethod
    def log_scale(self) -> torch.Tensor:
        """The log temperature the loss multiplies cosines by (a parameter of `module`)."""

    @property
    def log_scale_name(self) -> str:
        return next(n for n, p in self.module.named_parameters() if p is self.log_scale)

    def trainable_names(self, mode: TrainMode) -> list[str]:
        """Names of `module`'s parameters that train in `mode`, in module order."""
        names = [n for n, _ in self.module.named_parameters() if not _under(n, self.frozen)]
        if mode.kind == "all":
            return names
        chosen = {self.log_scale_name} - set(self.frozen)
        for tower in ("image", "text"):
            heads = [n for n in names if _under(n, self.towers[tower].heads)]
            if not heads:
                raise InvalidInputError(
                    f"{self.base}: found no projection head in the {tower} tower; "
                    "train with --mode all instead"
                )
            chosen.update(heads)
        if mode.kind == "blocks":
            for tower in mode.tower_list:
                chosen.update(self._last_blocks(names, tower, mode.blocks))
        return [n for n in names if n in chosen]

    def _last_blocks(self, names: list[str], tower: str, count: int) -> list[str]:
        parts = self.towers[tower]
        numbered = {}  # name -> block number
        for prefix in parts.blocks:
            pattern = re.compile(re.escape(prefix) + r"\.(\d+)\.")
            for n in names:
                if m := pattern.match(n):
                    numbered[n] = int(m.group(1))
        depth = len(set(numbered.values()))
        if depth == 0:
            raise InvalidInputError(f"{self.base}: found no blocks in the {tower} tower")
        if count > depth:
            raise InvalidInputError(
                f"{self.base}: the {tower} tower has {depth} blocks, cannot train the last "
                f"{count}; use --mode all to train everything"
            )
        last = set(sorted(set(numbered.values()))[-count:])
        after = [n for n in names if _under(n, parts.after_blocks)]
        return [n for n, b in numbered.items() if b in last] + after

    def prepare_images(self, images: list[Image.Image]) -> torch.Tensor:
        """RGB images -> the image tower's input rows; the encoder's own eval transform, with no
        augmentation, so one pass over the data serves every epoch."""
        return torch.from_numpy(np.stack([self.encoder.prepare_image(im) for im in images]))

    @abstractmethod
    def prepare_texts(self, texts: list[str]) -> Inputs:
        """Texts -> the text tower's input rows."""

    @abstractmethod
    def image_features(self, inputs: Inputs) -> torch.Tensor:
        """A batch of prepared image rows -> (b, dim) features, differentiable."""

    @abstractmethod
    def text_features(self, inputs: Inputs) -> torch.Tensor:
        """A batch of prepared text rows -> (b, dim) features, differentiable."""

    @abstractmethod
    def save(self, folder: Path) -> None:
        """Write the weights, and what loading needs besides the card, into the empty `folder`."""


class ClipModuleAdapter(TrainAdapter):
    """An encoder whose `model` is the whole two-tower module, temperature (`logit_scale`)
    included: OpenCLIP and Hugging Face CLIP/SigLIP."""

    def __init__(self, encoder: Encoder, base: str):
        self.encoder = encoder
        self.base = base
        self.module = encoder.model

    @property
    def log_scale(self) -> torch.Tensor:
        return self.module.logit_scale


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def take(inputs: Inputs, rows) -> Inputs:
    """The given rows of prepared inputs (a tensor, or a dict of tensors with one row per item)."""
    if isinstance(inputs, dict):
        return {k: v[rows] for k, v in inputs.items()}
    return inputs[rows]


def to_device(inputs: Inputs, device: torch.device) -> Inputs:
    if isinstance(inputs, dict):
        return {k: v.to(device) for k, v in inputs.items()}
    return inputs.to(device)
