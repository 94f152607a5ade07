"""The symmetric InfoNCE loss CLIP trains with, and its learnable temperature.

Each image in a batch should pick its own caption out of the batch's captions, and each caption
its own image: two cross-entropies over one similarity matrix, averaged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# CLIP's cap on the temperature: past 100 the softmax is nearly one-hot and training turns unstable.
MAX_LOGIT_SCALE = 100.0
MAX_LOG_SCALE = math.log(MAX_LOGIT_SCALE)


def contrastive_loss(
    image: torch.Tensor, text: torch.Tensor, log_scale: torch.Tensor
) -> torch.Tensor:
    """Symmetric InfoNCE of a batch of b (image, text) pairs; row i of each is pair i.

    image: (b, d), text: (b, d), any length (normalised here); log_scale: () log temperature,
    capped at MAX_LOG_SCALE. Pairs that repeat an image or a caption in one batch need no mask:
    two identical rows get identical logits, so treating one as the other's negative costs a
    constant and pushes nothing apart.
    """
    image = F.normalize(image.float(), dim=-1)  # (b, d)
    text = F.normalize(text.float(), dim=-1)  # (b, d)
    scale = log_scale.float().clamp(max=MAX_LOG_SCALE).exp()  # ()
    logits = scale * image @ text.T  # (b, b): row i = image i against every text
    targets = torch.arange(len(logits), device=logits.device)  # (b,) pair i matches i
    per_image = F.cross_entropy(logits, targets)  # each image picks its caption
    per_text = F.cross_entropy(logits.T, targets)  # each caption picks its image
    return (per_image + per_text) / 2


def clamp_log_scale_(log_scale: torch.Tensor) -> None:
    """Keep the learned temperature in [1, MAX_LOGIT_SCALE], in place, after an optimiser step."""
    with torch.no_grad():
        log_scale.clamp_(0.0, MAX_LOG_SCALE)
