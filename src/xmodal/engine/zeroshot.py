"""Zero-shot classification: labels become text prompts, images go to the closest prompt.

Each label is written into every template ("a photo of a {}."), the prompt embeddings are
averaged and renormalised (prompt ensembling, as in the CLIP paper), and an image's scores are a
softmax over its scaled cosine similarity to each label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from xmodal.errors import InvalidInputError
from xmodal.images import ImageSource
from xmodal.models.base import Encoder, l2_normalize

DEFAULT_TEMPLATES: tuple[str, ...] = ("a photo of a {}.",)


@dataclass(frozen=True)
class LabelScore:
    label: str
    score: float


def parse_labels(labels: str | Sequence[str]) -> list[str]:
    """'cat, dog,,car' or ['cat', 'dog'] -> ['cat', 'dog', 'car']; duplicates and blanks dropped."""
    items = labels.split(",") if isinstance(labels, str) else list(labels)
    out: list[str] = []
    for item in items:
        label = str(item).strip()
        if label and label not in out:
            out.append(label)
    if len(out) < 2:
        raise InvalidInputError(
            f"zero-shot classification needs at least two distinct labels, got {out or 'none'}"
        )
    return out


def _check_templates(templates: Sequence[str]) -> list[str]:
    templates = [t for t in templates if t.strip()]
    if not templates:
        raise InvalidInputError("give at least one template, e.g. 'a photo of a {}.'")
    for t in templates:
        if t.count("{}") != 1:
            raise InvalidInputError(f"template {t!r} must contain '{{}}' exactly once")
    return templates


# Prompts for labelling sounds (a model's image templates say "a photo of").
SOUND_TEMPLATES = ("the sound of a {}.", "a recording of a {}.", "{}")


def _templates_for(encoder: Encoder, templates: Sequence[str] | None) -> list[str]:
    return _check_templates(
        templates or getattr(encoder, "default_templates", None) or DEFAULT_TEMPLATES
    )


def _prompts(labels: list[str], templates: list[str]) -> list[str]:
    return [t.format(label) for label in labels for t in templates]


def label_prompts(
    encoder: Encoder, labels: str | Sequence[str], templates: Sequence[str] | None = None
) -> list[str]:
    """The prompts a ZeroShotClassifier for these labels embeds, in its order (every label in
    every template, label by label)."""
    return _prompts(parse_labels(labels), _templates_for(encoder, templates))


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class ZeroShotClassifier:
    """Embeds the label prompts once, then classifies any number of images against them.

    `prompt_vectors` are the embeddings of `self.prompts`, when the caller made them itself
    (the server, through its micro-batcher); otherwise the encoder embeds them here.
    """

    def __init__(
        self,
        encoder: Encoder,
        labels: str | Sequence[str],
        templates: Sequence[str] | None = None,
        *,
        prompt_vectors: np.ndarray | None = None,
    ):
        self.encoder = encoder
        self.labels = parse_labels(labels)
        self.templates = _templates_for(encoder, templates)
        if prompt_vectors is None:
            prompt_vectors = encoder.embed_texts(self.prompts)
        if len(prompt_vectors) != len(self.prompts):
            raise InvalidInputError(
                f"{len(prompt_vectors)} prompt vectors for {len(self.prompts)} prompts"
            )
        vecs = np.asarray(prompt_vectors).reshape(len(self.labels), len(self.templates), -1)
        self.label_vectors = l2_normalize(vecs.mean(axis=1))  # [labels, dim]

    @property
    def prompts(self) -> list[str]:
        return _prompts(self.labels, self.templates)

    def probabilities(self, image_vectors: np.ndarray) -> np.ndarray:
        """[n, dim] image embeddings -> [n, labels] probabilities."""
        return softmax(self.encoder.logit_scale * image_vectors @ self.label_vectors.T)

    def rank(self, image_vectors: np.ndarray, top_k: int | None = None) -> list[list[LabelScore]]:
        probs = self.probabilities(image_vectors)
        k = len(self.labels) if top_k is None else max(1, min(top_k, len(self.labels)))
        ranked = []
        for row in probs:
            order = np.argsort(-row, kind="stable")[:k]
            ranked.append([LabelScore(self.labels[i], float(row[i])) for i in order])
        return ranked

    def classify(
        self, images: Sequence[ImageSource], top_k: int | None = None
    ) -> list[list[LabelScore]]:
        return self.rank(self.encoder.embed_images(images), top_k)


def classify(
    encoder: Encoder,
    images: Sequence[ImageSource],
    labels: str | Sequence[str],
    templates: Sequence[str] | None = None,
    top_k: int | None = None,
) -> list[list[LabelScore]]:
    """Rank `labels` for each image, best first, with softmax probabilities."""
    return ZeroShotClassifier(encoder, labels, templates).classify(images, top_k)
