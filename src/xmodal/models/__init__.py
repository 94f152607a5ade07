"""Encoders: the contract, the registry of names, and the backends behind it."""

from xmodal.models.base import Encoder, l2_normalize
from xmodal.models.registry import ModelInfo, list_models, load_model

__all__ = ["Encoder", "ModelInfo", "l2_normalize", "list_models", "load_model"]
