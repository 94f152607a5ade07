"""Verdicts on images: zero-shot categories in the shared text-image space, plus open_nsfw.

For each category, an image's probability is a softmax over its scaled cosine similarity to
the category (the mean of its prompts' embeddings, renormalised) and to each neutral prompt:
the category has to look more like the image than every harmless description does. "sexual"
also has open_nsfw's score, which sees skin and poses a general model does not: its score is
the larger of the two, and it is flagged when either passes its own threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from xmodal.errors import InvalidInputError
from xmodal.images import ImageSource, load_image
from xmodal.models.base import Encoder, l2_normalize
from xmodal.moderation.nsfw import NsfwScorer
from xmodal.moderation.policy import SEXUAL, Policy, load_policy

NSFW_KEY = "nsfw"
# open_nsfw sees 224x224 crops of a 256x256 resize: decoding a JPEG smaller is pointless.
NSFW_DECODE_SIDE = 256


@dataclass(frozen=True)
class Verdict:
    # Per category probability in [0, 1]; "nsfw": open_nsfw's own score when it ran.
    scores: dict[str, float]
    flagged: list[str]

    @property
    def safe(self) -> bool:
        return not self.flagged

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        return sorted(self.scores.items(), key=lambda kv: -kv[1])[:k]


class Moderator:
    """Judges images against a policy with any Encoder that embeds texts and images."""

    def __init__(
        self,
        encoder: Encoder,
        policy: Policy | None = None,
        nsfw: bool | NsfwScorer = True,
    ):
        self.encoder = encoder
        self.policy = policy or load_policy()
        self.nsfw = NsfwScorer() if nsfw is True else (nsfw or None)
        cats = self.policy.categories
        prompts = [p for c in cats for p in c.prompts] + list(self.policy.neutral_prompts)
        vectors = encoder.embed_texts(prompts)
        means, start = [], 0
        for c in cats:
            means.append(vectors[start : start + len(c.prompts)].mean(axis=0))
            start += len(c.prompts)
        self.category_vectors = l2_normalize(np.stack(means))  # [categories, dim]
        self.neutral_vectors = vectors[start:]  # [neutral, dim]

    @property
    def fingerprint(self) -> str:
        """Changes with the policy, the encoder and whether open_nsfw takes part."""
        model = self.encoder.name + (f"+{self.nsfw.name}" if self.nsfw else "")
        return self.policy.fingerprint(model)

    def scores_from_vectors(self, vectors: np.ndarray) -> list[dict[str, float]]:
        """[n, dim] image embeddings -> per image, each category's zero-shot probability."""
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        if vectors.shape[1] != self.encoder.dim:
            raise InvalidInputError(
                f"vectors of dimension {vectors.shape[1]} for {self.encoder.name} "
                f"(dimension {self.encoder.dim})"
            )
        scale = float(self.encoder.logit_scale)
        cat = scale * vectors @ self.category_vectors.T  # [n, categories]
        neutral = scale * vectors @ self.neutral_vectors.T  # [n, neutral]
        # softmax([cat_c, neutral...])[0] = sigmoid(cat_c - logsumexp(neutral))
        top = neutral.max(axis=1, keepdims=True)
        lse = top + np.log(np.exp(neutral - top).sum(axis=1, keepdims=True))
        probs = 1.0 / (1.0 + np.exp(lse - cat))
        names = self.policy.names
        return [{n: float(p) for n, p in zip(names, row)} for row in probs]

    def judge(
        self, vectors: np.ndarray, images: Sequence[Image.Image | None] | None = None
    ) -> list[Verdict]:
        """Verdicts from stored image vectors and, where given, the decoded images (for
        open_nsfw; None for an image that is judged on its vector alone)."""
        rows = self.scores_from_vectors(vectors)
        images = list(images) if images is not None else [None] * len(rows)
        if len(images) != len(rows):
            raise InvalidInputError(f"{len(images)} images for {len(rows)} vectors")
        nsfw = [None] * len(rows)
        present = [i for i, im in enumerate(images) if im is not None]
        if self.nsfw is not None and present:
            for i, p in zip(present, self.nsfw.score([images[i] for i in present])):
                nsfw[i] = float(p)
        return [self._verdict(row, n) for row, n in zip(rows, nsfw)]

    def verdict(self, vector: np.ndarray, image: Image.Image | None = None) -> Verdict:
        return self.judge(np.asarray(vector)[None, :], [image])[0]

    def moderate(self, images: Sequence[ImageSource]) -> list[Verdict]:
        """Load, embed and judge images (paths, bytes or PIL images); ImageLoadError for an
        unreadable one."""
        loaded = [load_image(src, min_side=NSFW_DECODE_SIDE) for src in images]
        if not loaded:
            return []
        return self.judge(self.encoder.embed_images(loaded), loaded)

    def _verdict(self, scores: dict[str, float], nsfw: float | None) -> Verdict:
        flagged = [c.name for c in self.policy.categories if scores[c.name] >= c.threshold]
        if nsfw is not None:
            scores[NSFW_KEY] = nsfw
            if SEXUAL in scores:
                scores[SEXUAL] = max(scores[SEXUAL], nsfw)
                if nsfw >= self.policy.nsfw_threshold and SEXUAL not in flagged:
                    flagged.insert(self.policy.names.index(SEXUAL), SEXUAL)
        return Verdict(scores, flagged)
