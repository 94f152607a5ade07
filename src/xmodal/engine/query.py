"""Mixed queries: texts, images and sounds, each with a weight, positive ("more like this")
or negative.

The query vector is the normalised weighted sum of the terms' embeddings, so a negative term
pushes results away from what it describes. One text is the common case and costs one encode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from xmodal.audio import AudioSource
from xmodal.errors import InvalidInputError
from xmodal.images import ImageSource
from xmodal.models.base import Encoder

TEXT = "text"
IMAGE = "image"
AUDIO = "audio"
KINDS = (TEXT, IMAGE, AUDIO)
# Below this norm the weighted terms cancel out and the query has no direction.
_MIN_QUERY_NORM = 1e-3


@dataclass(frozen=True)
class QueryTerm:
    kind: str  # TEXT, IMAGE or AUDIO
    value: str | ImageSource | AudioSource
    weight: float = 1.0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise InvalidInputError(
                f"query term kind must be text, image or audio, not {self.kind!r}"
            )
        if not np.isfinite(self.weight) or self.weight == 0:
            raise InvalidInputError(f"query term weight must be a non-zero number: {self.weight}")

    def describe(self) -> str:
        sign = "-" if self.weight < 0 else "+"
        weight = "" if abs(self.weight) == 1 else f"{abs(self.weight):g}*"
        value = self.value if isinstance(self.value, str) else f"<{type(self.value).__name__}>"
        return f"{sign}{weight}{self.kind}:{value}"


def split_weight(value: str, default: float = 1.0) -> tuple[str, float]:
    """'sunset^2' -> ('sunset', 2.0); a '^' not followed by a number is part of the value."""
    head, sep, tail = value.rpartition("^")
    if sep and head:
        try:
            return head, float(tail)
        except ValueError:
            pass
    return value, default


def query_vector(encoder: Encoder, terms: Sequence[QueryTerm]) -> np.ndarray:
    """Weighted, normalised sum of the terms' embeddings: float32 [dim]."""
    check_terms(terms)
    texts = [t for t in terms if t.kind == TEXT]
    images = [t for t in terms if t.kind == IMAGE]
    sounds = [t for t in terms if t.kind == AUDIO]
    parts = []
    if texts:
        parts.append(encoder.embed_texts([str(t.value) for t in texts]))
    if images:
        parts.append(encoder.embed_images([t.value for t in images]))
    if sounds:
        parts.append(encoder.embed_audio([t.value for t in sounds]))
    return combine(np.concatenate(parts), [t.weight for t in texts + images + sounds])


def check_terms(terms: Sequence[QueryTerm]) -> None:
    if not terms:
        raise InvalidInputError("empty query: give a text, an image or a sound")
    if all(t.weight < 0 for t in terms):
        raise InvalidInputError("a query needs at least one positive term, not only negatives")


def combine(vectors: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """[n, dim] unit vectors and n weights -> their weighted sum, normalised: float32 [dim]."""
    total = np.asarray(weights, dtype=np.float32) @ np.asarray(vectors, dtype=np.float32)
    norm = float(np.linalg.norm(total))
    if not np.isfinite(norm) or norm < _MIN_QUERY_NORM:
        raise InvalidInputError("the query terms cancel each other out: change their weights")
    return (total / norm).astype(np.float32)
