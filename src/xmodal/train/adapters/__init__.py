"""Training adapters, one per backend: `adapter_for(base)` loads the base model and wraps it."""

from __future__ import annotations

from xmodal.errors import InvalidInputError
from xmodal.models.registry import parse_name
from xmodal.train.adapters.base import TrainAdapter

TRAINABLE = ("lite", "openclip", "hf")


def adapter_for(base: str, device: str = "cpu") -> TrainAdapter:
    """Load the base model `base` (a registry name) on `device` and wrap it for training."""
    from xmodal.models import load_model

    prefix, _ = parse_name(base)
    if prefix == "trained":
        raise InvalidInputError(
            f"{base} is already a trained model: train again from its base model (its "
            "MODEL_CARD.md names it), or continue its own run with --resume"
        )
    if prefix not in TRAINABLE:
        raise InvalidInputError(
            f"{base} cannot be trained: use lite, openclip:ARCH/PRETRAINED or hf:REPO_OR_DIR"
        )
    if prefix == "lite":
        from xmodal.train.adapters.lite import LiteAdapter

        return LiteAdapter(load_model(base, device=device), base)
    if prefix == "openclip":
        from xmodal.train.adapters.openclip import OpenClipAdapter

        return OpenClipAdapter(load_model(base, device=device), base)
    from xmodal.train.adapters.hf import HFAdapter

    return HFAdapter(load_model(base, device=device), base)


__all__ = ["TRAINABLE", "TrainAdapter", "adapter_for"]
