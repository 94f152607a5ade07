"""A reference bank: captioned CC0 pictures that lend their words to pictures that look like them.

ConSE (conse.py) can only say which ImageNet classes a picture resembles; a drawing of a
trumpet-playing frog or an emoji of a ringed planet has no class. The bank holds pictures that
ship with a caption (Noto emoji and their Unicode names, openclipart drawings and their file
names). An image looks up its nearest bank pictures by the image tower's own view (centred
logits, cosine) and borrows their captions, embedded like class texts (ReferenceBank.lend): the
image side of SuS-X / Tip-Adapter, without training. A picture unlike everything in the bank
(cos below the floor) borrows nothing and stays plain ConSE.

Shipped data (scripts/build_lite_data.py writes them from the train splits of categories the
benchmarks never report on, near-duplicates of reported pictures left out):
  bank_captions.tsv                source \\t ref \\t caption, one row per bank picture
  bank_visual.npz                  basis (r, 1000) and features (n, r): the bank pictures' unit
                                   centred logits projected on their top-r principal axes
  bank_<tower>_<role>.npz          q (n, 384) int8 and scale (n,): caption vectors per text tower
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from xmodal.errors import ModelLoadError
from xmodal.models.base import l2_normalize
from xmodal.models.lite.classes import DATA_DIR
from xmodal.models.lite.spec import BankUse

CAPTIONS_FILE = DATA_DIR / "bank_captions.tsv"
VISUAL_FILE = DATA_DIR / "bank_visual.npz"
# A bank picture at this visual cosine or closer to a reported picture is its near-duplicate
# and is left out of the bank (scripts/build_lite_data.py, benchmarks/lite_v2_data.py).
NEAR_DUPLICATE = 0.98


def caption_vectors_file(tower: str, role: str) -> Path:
    return DATA_DIR / f"bank_{tower}_{role}.npz"


def visual_view(logits: np.ndarray) -> np.ndarray:
    """(n, 1000) logits -> (n, 1000) unit rows of logits minus their own mean: what the bank
    compares. The mean carries the tower's overall confidence, not what the picture shows."""
    logits = np.asarray(logits, np.float32)
    return l2_normalize(logits - logits.mean(axis=1, keepdims=True))


def quantise(vectors: np.ndarray) -> dict[str, np.ndarray]:
    """Rows -> int8 codes and a float32 scale per row (error under 0.4% of each row's peak)."""
    scale = np.abs(vectors).max(axis=1) / 127
    scale = np.where(scale > 0, scale, 1).astype(np.float32)
    return {"q": np.round(vectors / scale[:, None]).astype(np.int8), "scale": scale}


def dequantise(stored) -> np.ndarray:
    return stored["q"].astype(np.float32) * stored["scale"][:, None]


def _load(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    try:
        with np.load(path) as z:
            return {k: z[k] for k in keys}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise ModelLoadError(
            f"{path.name} is not shipped or is damaged: run scripts/build_lite_data.py"
        ) from e


@dataclass(frozen=True)
class BankPicture:
    source: str  # "emoji" or "openclipart"
    ref: str  # the emoji's code point (U+1F431) or the drawing's path under openclipart's root
    caption: str


@lru_cache(maxsize=1)
def bank_pictures() -> tuple[BankPicture, ...]:
    """What each bank row is, in the order of the shipped vectors."""
    try:
        lines = CAPTIONS_FILE.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise ModelLoadError(f"{CAPTIONS_FILE.name} is not shipped: run build_lite_data.py") from e
    return tuple(BankPicture(*line.split("\t", 2)) for line in lines)


class ReferenceBank:
    """The bank as one variant uses it: its towers' caption vectors, centred like class texts."""

    def __init__(self, use: BankUse, towers: list[str], roles: list[str], means: list, weights):
        """towers/roles: the variant's text towers and their class roles; means: each tower's
        mean class vector (None: not centred); weights: each tower's share of a joint vector."""
        visual = _load(VISUAL_FILE, ("basis", "features"))
        self.basis = visual["basis"].astype(np.float32)  # (r, 1000)
        self.features = visual["features"].astype(np.float32)  # (n, r)
        parts = []
        for tower, role, mean, w in zip(towers, roles, means, weights):
            raw = dequantise(_load(caption_vectors_file(tower, role), ("q", "scale")))
            if len(raw) != len(self.features):
                raise ModelLoadError(
                    f"{caption_vectors_file(tower, role).name} holds {len(raw)} captions but the "
                    f"bank {len(self.features)} pictures: run scripts/build_lite_data.py"
                )
            parts.append(w * l2_normalize(raw if mean is None else raw - mean))
        self.captions = np.concatenate(parts, axis=1)  # (n, dim), rows unit
        self.use = use

    def similarity(self, logits: np.ndarray) -> np.ndarray:
        """(n, 1000) logits -> (n, bank size) visual cosines, through the bank's principal
        axes: both sides projected and not renormalised, which keeps each cosine within about
        0.01 of the full one (renormalising would inflate the cosines of pictures unlike the
        bank, photos above all, past the floor)."""
        return (visual_view(logits) @ self.basis.T) @ self.features.T

    def lend(self, logits: np.ndarray) -> np.ndarray:
        """(n, 1000) logits -> (n, dim) borrowed captions, to add to the unit ConSE vector: the
        mean caption of the k nearest bank pictures, weighted by relu(cos - floor) *
        exp(cos / sharpness) so the closest dominate, times use.weight and a gate that fades in
        from 0 at the floor to 1 at cos = 1 for the nearest. All zero for a picture with no
        neighbour above the floor: most photos (the floor is set from real photos)."""
        u = self.use
        sim = self.similarity(logits)
        k = min(u.k, sim.shape[1])
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        s = np.take_along_axis(sim, top, axis=1)
        w = np.maximum(s - u.floor, 0.0) * np.exp((s - 1) / u.sharpness)  # exp(-10) at worst
        total = w.sum(axis=1, keepdims=True)
        gate = np.maximum(s.max(axis=1, keepdims=True) - u.floor, 0.0) / (1 - u.floor)
        mean = np.einsum("nk,nkd->nd", w, self.captions[top]) / np.maximum(total, 1e-30)
        return (u.weight * gate * mean).astype(np.float32)
