"""How far a faster model (an ONNX graph, int8 weights) moved vectors from its reference.

numpy only: used by the exporter, the torch int8 option and the benchmarks alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xmodal.models.base import l2_normalize

# fp32 graphs differ from torch only by float rounding; int8 may move vectors a little, as long
# as rankings over a real gallery stay nearly the same.
FP32_MIN_COSINE = 0.9999
INT8_MIN_COSINE = 0.99
INT8_MIN_TOP10_OVERLAP = 0.90


def row_cosines(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Cosine between each row of `reference` and the same row of `candidate`."""
    return (l2_normalize(reference) * l2_normalize(candidate)).sum(axis=1)


def topk_overlap(
    queries_ref: np.ndarray,
    gallery_ref: np.ndarray,
    queries_new: np.ndarray,
    gallery_new: np.ndarray,
    k: int = 10,
) -> float:
    """Mean share of each query's top-k gallery items that both models retrieve."""
    k = min(k, len(gallery_ref))
    if k < 1 or len(queries_ref) == 0:
        return 1.0
    ref = np.argsort(-(queries_ref @ gallery_ref.T), axis=1)[:, :k]
    new = np.argsort(-(queries_new @ gallery_new.T), axis=1)[:, :k]
    shared = [len(set(a) & set(b)) for a, b in zip(ref.tolist(), new.tolist())]
    return float(np.mean(shared)) / k


@dataclass(frozen=True)
class Parity:
    """One side (image or text) of a faster model against its reference."""

    side: str
    min_cosine: float
    mean_cosine: float
    top10_overlap: float | None = None  # retrieval over a gallery, where one was given

    def passes(self, min_cosine: float, min_overlap: float | None = None) -> bool:
        if not self.min_cosine >= min_cosine:  # NaN fails
            return False
        if min_overlap is None or self.top10_overlap is None:
            return True
        return self.top10_overlap >= min_overlap

    def describe(self) -> str:
        text = f"{self.side}: cosine min {self.min_cosine:.5f} mean {self.mean_cosine:.5f}"
        if self.top10_overlap is not None:
            text += f", top-10 overlap {self.top10_overlap:.1%}"
        return text

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def measure(side: str, reference: np.ndarray, candidate: np.ndarray, overlap=None) -> Parity:
    cos = row_cosines(reference, candidate)
    return Parity(side, float(cos.min()), float(cos.mean()), overlap)
