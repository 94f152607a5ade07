"""How well a policy's thresholds work on labelled images: precision and recall per category,
and the threshold that would have given the best F1 on them.

The labelled folder holds one subfolder per category name, with images of that category, and
`safe/` with images of none; for each category, every image outside its folder is a negative.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xmodal.errors import ImageLoadError, InvalidInputError, MissingDataError
from xmodal.images import IMAGE_EXTENSIONS, load_image
from xmodal.moderation.moderator import NSFW_DECODE_SIDE, Moderator

SAFE = "safe"
_BATCH = 16


@dataclass(frozen=True)
class CategoryEval:
    name: str
    support: int  # images in the category's folder
    precision: float
    recall: float
    threshold: float
    suggested_threshold: float
    suggested_f1: float

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass(frozen=True)
class EvalReport:
    categories: list[CategoryEval]
    images: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    # Images in safe/, and how many of them were flagged for anything (false alarms).
    safe_images: int = 0
    safe_flagged: int = 0

    def table(self) -> str:
        head = f"{'CATEGORY':<14} {'SUPPORT':>7} {'PRECISION':>9} {'RECALL':>6} {'F1':>5}"
        lines = [head + f" {'THRESHOLD':>9} {'SUGGESTED':>9} {'(F1)':>5}"]
        for c in self.categories:
            lines.append(
                f"{c.name:<14} {c.support:>7} {c.precision:>9.2f} {c.recall:>6.2f} {c.f1:>5.2f}"
                f" {c.threshold:>9.2f} {c.suggested_threshold:>9.2f} {c.suggested_f1:>5.2f}"
            )
        if self.safe_images:
            lines.append(f"{SAFE}/: {self.safe_flagged} of {self.safe_images} images flagged")
        lines.append(f"{self.images} images, {len(self.skipped)} skipped")
        return "\n".join(lines)


def labelled_images(folder: str | os.PathLike, categories: list[str]) -> dict[str, list[Path]]:
    """{subfolder name: its image files}; a subfolder that is neither a category nor `safe`
    is refused, so a typo does not silently turn positives into nothing."""
    root = Path(folder)
    if not root.is_dir():
        raise MissingDataError(f"labelled folder not found: {root}")
    out: dict[str, list[Path]] = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        if sub.name != SAFE and sub.name not in categories:
            raise InvalidInputError(
                f"{sub}: not a category of the policy ({', '.join(categories)}) nor '{SAFE}'"
            )
        files = sorted(
            p for p in sub.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
        )
        out[sub.name] = files
    if not any(name != SAFE and files for name, files in out.items()):
        raise MissingDataError(
            f"{root}: no images in a category subfolder (one per category name, and '{SAFE}/')"
        )
    return out


def evaluate_policy(moderator: Moderator, labelled_dir: str | os.PathLike) -> EvalReport:
    policy = moderator.policy
    folders = labelled_images(labelled_dir, policy.names)
    labels, scores, flags, skipped = [], [], [], []
    items = [(name, path) for name, files in folders.items() for path in files]
    for start in range(0, len(items), _BATCH):
        loaded, names = [], []
        for name, path in items[start : start + _BATCH]:
            try:
                loaded.append(load_image(path, min_side=NSFW_DECODE_SIDE))
                names.append(name)
            except ImageLoadError as e:
                skipped.append((str(path), e.reason))
        if not loaded:
            continue
        vectors = moderator.encoder.embed_images(loaded)
        for name, verdict in zip(names, moderator.judge(vectors, loaded)):
            labels.append(name)
            scores.append(verdict.scores)
            flags.append(set(verdict.flagged))
    rows = []
    for category in policy.categories:
        if not folders.get(category.name):
            continue
        truth = np.array([label == category.name for label in labels])
        predicted = np.array([category.name in f for f in flags])
        values = np.array([s[category.name] for s in scores])
        best_t, best_f1 = _best_threshold(values, truth)
        rows.append(
            CategoryEval(
                category.name,
                int(truth.sum()),
                _ratio((predicted & truth).sum(), predicted.sum()),
                _ratio((predicted & truth).sum(), truth.sum()),
                category.threshold,
                best_t,
                best_f1,
            )
        )
    safe = [bool(f) for label, f in zip(labels, flags) if label == SAFE]
    return EvalReport(rows, len(labels), skipped, len(safe), sum(safe))


def _ratio(num, den) -> float:
    return float(num) / float(den) if den else 0.0


def _best_threshold(values: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """The threshold among the observed scores with the best F1 (the highest on ties, which
    flags the fewest images)."""
    best_t, best_f1 = 1.0, 0.0
    positives = truth.sum()
    for t in np.unique(values):
        predicted = values >= t
        tp = (predicted & truth).sum()
        f1 = 2 * tp / (predicted.sum() + positives) if positives else 0.0
        if f1 >= best_f1:
            best_t, best_f1 = float(t), float(f1)
    # Rounded down, so the suggested threshold still flags the image it came from.
    return math.floor(best_t * 10_000) / 10_000, best_f1
