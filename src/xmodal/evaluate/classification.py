"""Zero-shot classification accuracy on a labelled image (or sound) set, with the classifiers
that `xmodal classify` uses (label prompts from templates, averaged per label; sounds are
prompted with the sound templates unless templates are given)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from xmodal.engine.zeroshot import SOUND_TEMPLATES, ZeroShotClassifier
from xmodal.errors import InvalidInputError
from xmodal.models.base import Encoder


def zero_shot_metrics(
    encoder: Encoder,
    image_vecs: np.ndarray,
    image_labels: Sequence[str],
    labels: Sequence[str],
    templates: Sequence[str] | None = None,
    is_sound: Sequence[bool] | None = None,
) -> dict:
    """Top-1 and top-5 accuracy and mean per-class recall over the images' true labels.

    Rows flagged in `is_sound` are labelled with SOUND_TEMPLATES when no templates are given
    ("the sound of a dog.", not "a photo of a dog."), as `xmodal classify` does.
    top5_accuracy is None with five labels or fewer, where it would always be 1. Mean per-class
    recall (balanced accuracy) weighs every class the same however many images it has.
    """
    sound = np.zeros(len(image_vecs), bool) if is_sound is None else np.asarray(is_sound, bool)
    if sound.shape != (len(image_vecs),):
        raise InvalidInputError(f"{len(sound)} sound flags for {len(image_vecs)} vectors")
    sees = ZeroShotClassifier(encoder, labels, templates) if not sound.all() else None
    hears = None
    if sound.any():
        hears = ZeroShotClassifier(encoder, labels, templates or SOUND_TEMPLATES)
    classifier = sees or hears
    index = {label: i for i, label in enumerate(classifier.labels)}
    unknown = sorted(set(image_labels) - set(index))
    if unknown:
        raise InvalidInputError(f"image labels not among the classes: {unknown[:5]}")
    truth = np.array([index[label] for label in image_labels])
    probs = np.zeros((len(image_vecs), len(index)))
    for judge, rows in ((sees, ~sound), (hears, sound)):
        if judge is not None and rows.any():
            probs[rows] = judge.probabilities(image_vecs[rows])
    order = np.argsort(-probs, axis=1, kind="stable")
    top1 = order[:, 0] == truth
    top5 = (order[:, :5] == truth[:, None]).any(axis=1)
    per_class = {
        label: float(top1[truth == i].mean()) for label, i in index.items() if (truth == i).any()
    }
    return {
        "top1_accuracy": float(top1.mean()),
        "top5_accuracy": float(top5.mean()) if len(index) > 5 else None,
        "mean_per_class_recall": float(np.mean(list(per_class.values()))),
        "per_class_recall": per_class,
        "n_classes": len(index),
        "templates": classifier.templates,  # the images' templates; the sounds' when all sound
        "sound_templates": hears.templates if hears else None,
    }
