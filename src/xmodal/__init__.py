"""xmodal: texts and images in one vector space, and what you build on it."""

from xmodal.errors import (
    ImageLoadError,
    InvalidInputError,
    MissingExtraError,
    ModelLoadError,
    ModelNotFoundError,
    XmodalError,
)
from xmodal.models import Encoder, list_models, load_model

__version__ = "0.1.0"

__all__ = [
    "Encoder",
    "ImageLoadError",
    "InvalidInputError",
    "MissingExtraError",
    "ModelLoadError",
    "ModelNotFoundError",
    "XmodalError",
    "list_models",
    "load_model",
]
