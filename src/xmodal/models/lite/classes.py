"""The 1000 ImageNet classes as texts, and their precomputed text-tower embeddings.

ImageNet names alone are ambiguous ("crane" is a bird and a machine, "tiger cat" is a tabby),
so each class also carries its WordNet lemmas and gloss. `scripts/build_lite_data.py` writes
both data files from timm's offline WordNet tables and the text towers.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from xmodal.errors import InvalidInputError, ModelLoadError

DATA_DIR = Path(__file__).parent / "data"
CLASSES_FILE = DATA_DIR / "imagenet_classes.tsv"

# How one class is written before it is embedded.
STYLES = ("name", "lemmas", "gloss", "prompt")


@dataclass(frozen=True)
class ImageNetClass:
    synset: str
    lemmas: tuple[str, ...]
    gloss: str

    @property
    def name(self) -> str:
        return self.lemmas[0]


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[ImageNetClass, ...]:
    """The classes in logit order (synset, lemmas, gloss per line of the shipped TSV)."""
    try:
        lines = CLASSES_FILE.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise ModelLoadError(f"{CLASSES_FILE} is missing: reinstall xmodal") from e
    classes = []
    for line in lines:
        synset, lemmas, gloss = line.split("\t")
        classes.append(ImageNetClass(synset, tuple(lemmas.split(", ")), gloss))
    return tuple(classes)


def class_text(c: ImageNetClass, style: str) -> str:
    if style == "name":
        return c.name
    if style == "lemmas":
        return ", ".join(c.lemmas)
    if style == "gloss":
        return f"{', '.join(c.lemmas)}: {c.gloss}"
    if style == "prompt":
        return f"a photo of a {c.name}."
    raise InvalidInputError(f"unknown class-text style {style!r}: use one of {', '.join(STYLES)}")


def class_texts(style: str) -> list[str]:
    return [class_text(c, style) for c in imagenet_classes()]


def embeddings_file(text_tower: str, style: str, role: str) -> Path:
    return DATA_DIR / f"classes_{text_tower}_{style}_{role}.npy"


def load_class_embeddings(text_tower: str, style: str, role: str) -> np.ndarray:
    """Shipped (1000, 384) unit vectors of the class texts, as float32."""
    path = embeddings_file(text_tower, style, role)
    try:
        return np.load(path).astype(np.float32)
    except OSError as e:
        raise ModelLoadError(
            f"{path.name} is not shipped: run scripts/build_lite_data.py or pick another variant"
        ) from e
