"""The 1000 ImageNet classes as texts, and their precomputed text-tower embeddings.

ImageNet names alone are ambiguous ("crane" is a bird and a machine, "tiger cat" is a tabby),
so each class also carries its WordNet lemmas and gloss. Class texts never say what kind of thing
a class is, so broad queries ("an animal", "a vehicle") find nothing: each class also carries its
WordNet hypernym path (tabby: domestic cat, cat, feline, carnivore, ..., mammal, ..., animal, ...),
which the "hyper" styles append. `scripts/build_lite_data.py` writes the data files from timm's
offline WordNet tables, Debian's WordNet database (wordnet.py) and the text towers.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from xmodal.errors import InvalidInputError, ModelLoadError

DATA_DIR = Path(__file__).parent / "data"
CLASSES_FILE = DATA_DIR / "imagenet_classes.tsv"
# synset \t ancestor|ancestor|... (nearest first, up to WordNet's root), in logit order.
HYPERNYMS_FILE = DATA_DIR / "imagenet_hypernyms.tsv"

# How one class is written before it is embedded.
STYLES = ("name", "lemmas", "gloss", "prompt", "hyper", "hyper-broad")

# How many of the nearest (non-abstract) ancestors the "hyper" styles name.
HYPERNYMS = 4

# WordNet's top nodes that every path of a kind ends in, and that say nothing a photo could show:
# all 1000 paths end in "entity", 997 in "physical entity", 948 in "object", 932 in "whole";
# "living thing"/"organism" sit above every animal and plant, "artifact"/"instrumentality" above
# 516 and 347 made things, "matter"/"substance"/"solid" above the foods, "part"/"piece" above
# the cloths, "location"/"point" above the bakery, "abstraction"/"communication"/"attribute"
# above the street sign, traffic light and bubble; "thing" and "causal agent" are top nodes no
# class reaches today. The nearer, informative nodes (animal, device, food, structure,
# geological formation...) stay.
ABSTRACT = frozenset(
    {
        "entity",
        "physical entity",
        "abstraction",
        "object",
        "whole",
        "thing",
        "part",
        "piece",
        "matter",
        "substance",
        "solid",
        "causal agent",
        "living thing",
        "organism",
        "artifact",
        "instrumentality",
        "location",
        "point",
        "communication",
        "attribute",
    }
)

# Ancestors a user types for a broad query, named by "hyper-broad" however far up they are.
# Chosen from the real paths (classes reaching each, of 1000): animal 398, mammal 218, dog 118,
# bird 52, fish 16, food 48, vehicle 67, device 124, container 48, clothing 48, structure 55,
# musical instrument 26, furniture 22, person 3... Only first lemmas of ancestors count: banana
# reaches "edible fruit", "produce" and "food", not "fruit" (only 6 seeds reach it: acorn, corn...).
# 66 classes reach none: coverings and implements (mask, umbrella, broom) with no word people use.
BROAD = frozenset(
    {
        # animals
        "animal",
        "mammal",
        "bird",
        "fish",
        "reptile",
        "amphibian",
        "insect",
        "spider",
        "crustacean",
        "mollusk",
        "dog",
        "cat",
        "snake",
        "lizard",
        "turtle",
        "monkey",
        "ape",
        "bear",
        # plants and food
        "plant",
        "fungus",
        "flower",
        "food",
        "fruit",
        "edible fruit",
        "vegetable",
        "dish",
        "beverage",
        # people
        "person",
        # vehicles
        "vehicle",
        "car",
        "truck",
        "bus",
        "train",
        "boat",
        "ship",
        "aircraft",
        # made things
        "instrument",
        "musical instrument",
        "weapon",
        "tool",
        "machine",
        "device",
        "equipment",
        "appliance",
        "computer",
        "utensil",
        "kitchen utensil",
        "tableware",
        "toiletry",
        "container",
        "bag",
        "box",
        "bottle",
        "clothing",
        "garment",
        "footwear",
        "headdress",
        "hat",
        "armor",
        "fabric",
        "furniture",
        "structure",
        "building",
        "roof",
        "bridge",
        "sign",
        "ball",
        "plaything",
        # scenery
        "geological formation",
        "mountain",
        "shore",
    }
)


@dataclass(frozen=True)
class ImageNetClass:
    synset: str
    lemmas: tuple[str, ...]
    gloss: str
    hypernyms: tuple[str, ...] = ()  # WordNet ancestors, nearest first (wordnet.py)

    @property
    def name(self) -> str:
        return self.lemmas[0]


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[ImageNetClass, ...]:
    """The classes in logit order (synset, lemmas, gloss per line of the shipped TSV, and the
    hypernym path of the same synset from the shipped hypernym TSV)."""
    lines = _shipped_lines(CLASSES_FILE)
    paths = hypernym_paths()
    classes = []
    for line in lines:
        synset, lemmas, gloss = line.split("\t")
        if synset not in paths:
            raise ModelLoadError(f"{HYPERNYMS_FILE} has no {synset}: reinstall xmodal")
        classes.append(ImageNetClass(synset, tuple(lemmas.split(", ")), gloss, paths[synset]))
    return tuple(classes)


def hypernym_paths() -> dict[str, tuple[str, ...]]:
    """{synset: ancestors, nearest first} from the shipped hypernym TSV."""
    paths = {}
    for line in _shipped_lines(HYPERNYMS_FILE):
        synset, ancestors = line.split("\t")
        paths[synset] = tuple(ancestors.split("|"))
    return paths


def hypernyms_tsv(paths: dict[str, list[str]]) -> str:
    """The text of HYPERNYMS_FILE for {synset: ancestors} (in the dict's order)."""
    return "".join(f"{synset}\t{'|'.join(ancestors)}\n" for synset, ancestors in paths.items())


def _shipped_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise ModelLoadError(f"{path} is missing: reinstall xmodal") from e


def hypernym_words(
    c: ImageNetClass, count: int = HYPERNYMS, skip: frozenset[str] = ABSTRACT
) -> tuple[str, ...]:
    """The `count` nearest ancestors of a class, leaving out those in `skip`."""
    return tuple(a for a in c.hypernyms if a not in skip)[:count]


def broad_hypernym_words(
    c: ImageNetClass,
    count: int = HYPERNYMS,
    broad: frozenset[str] = BROAD,
    skip: frozenset[str] = ABSTRACT,
) -> tuple[str, ...]:
    """The `count` nearest ancestors, then every farther one in `broad`, nearest first."""
    nearest = hypernym_words(c, count, skip)
    farther = (a for a in c.hypernyms if a in broad and a not in nearest and a not in skip)
    return nearest + tuple(farther)


def class_text(c: ImageNetClass, style: str) -> str:
    if style == "name":
        return c.name
    if style == "lemmas":
        return ", ".join(c.lemmas)
    if style == "gloss":
        return f"{', '.join(c.lemmas)}: {c.gloss}"
    if style == "prompt":
        return f"a photo of a {c.name}."
    if style == "hyper":
        return _with_kinds(class_text(c, "gloss"), hypernym_words(c))
    if style == "hyper-broad":
        return _with_kinds(class_text(c, "gloss"), broad_hypernym_words(c))
    raise InvalidInputError(f"unknown class-text style {style!r}: use one of {', '.join(STYLES)}")


def _with_kinds(text: str, kinds: tuple[str, ...]) -> str:
    return f"{text}; a kind of {', '.join(kinds)}" if kinds else text


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
