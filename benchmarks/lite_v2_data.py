"""Sets and cached image features for benchmarks/lite_v2.py.

Held-out (reported, never tuned on):
  emoji      the test split of the Noto emoji (captions by hash, samples.split_of), each with its
             English Unicode name and its CLDR Hindi name (unicode-cldr-core);
  clipart    openclipart drawings of the held-out *categories* (hash of the top folder, below):
             no lever sees a drawing of these categories, captions or pictures;
  photos     the 14 sample photos (zero-shot) and 11 Hindi queries for them.
Tuning (weights of each lever are chosen here): the emoji train split and the clip-art train
split of the other categories.
Photo anchor: the JPEG wallpapers of mate-backgrounds and plasma-workspace-wallpapers (no labels
used): the bank's floor is set where it leaves nine in ten of these real photos untouched.
Bank (the reference bank lever): the same train splits, all of them, less every caption that a
held-out picture carries (as in the shipped bank, scripts/build_lite_data.py); a tuning query
never sees bank entries with its own caption, and bank pictures that are near-duplicates of a
held-out picture (image-tower logits at cosine >= NEAR_DUPLICATE) are dropped.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from _common import OUT, cached
from indexing import wallpapers
from xmodal.images import load_image
from xmodal.models.lite.bank import NEAR_DUPLICATE, visual_view
from xmodal.models.lite.spec import IMAGE_TOWERS
from xmodal.models.preprocess import ImageTransform
from xmodal.samples import (
    clipart_images,
    emoji_hindi_names,
    emoji_images,
    held_out_category,
    sample_photos,
    split_of,
)

TOWER = IMAGE_TOWERS["lite0"]


@dataclass(frozen=True)
class Item:
    caption: str
    path: Path
    category: str
    hindi: str | None = None

    @property
    def label(self) -> str:
        return self.caption


def _every(items: list, cap: int) -> list:
    return items[:: max(1, -(-len(items) // cap))]


def _emoji(split: str) -> list[Item]:
    hindi = emoji_hindi_names()
    out = []
    for x in emoji_images(OUT / "emoji", split=split):
        ch = chr(int(x.path.stem.split("_")[1], 16))
        assert unicodedata.name(ch).lower() == x.caption
        out.append(Item(x.caption, x.path, x.category, hindi.get(ch)))
    return out


def v2_sets(cap: int = 500) -> dict[str, list[Item]]:
    clipart = clipart_images()
    held = [x for x in clipart if held_out_category(x.category)]
    seen = [x for x in clipart if not held_out_category(x.category)]
    # No caption of a held-out picture in the bank or the tuning set: the same sign can sit in
    # two categories ("signs" and "transportation"), an emoji's name can name a drawing.
    photos = [Item(p.label, p.path, "photo") for p in sample_photos(OUT / "photos")]
    emoji_test = _emoji("test")
    asked = {x.caption for x in [*held, *emoji_test, *photos]}
    seen_train = [x for x in seen if split_of(x.caption) == "train" and x.caption not in asked]
    emoji_train = _emoji("train")
    as_items = lambda xs: [Item(x.caption, x.path, x.category) for x in xs]  # noqa: E731
    return {
        "photos": photos,
        "emoji": emoji_test,
        "clipart": as_items(_every(held, cap)),
        "tune_emoji": _every(emoji_train, cap),
        "tune_clipart": as_items(_every(seen_train, cap)),
        "bank": emoji_train + as_items(seen_train),
        "wallpapers": [Item(x.stem, x, "photo") for x in wallpapers()],
    }


def _prepare(path: Path) -> np.ndarray:
    """Pixels as lite prepares them: transparency on white, padded to a white square."""
    return ImageTransform(TOWER.size, TOWER.mean, TOWER.std, resize_mode="pad")(load_image(path))


def features(items: list[Item], threads: int = 2) -> np.ndarray:
    """(n, 1000) image-tower logits, cached."""
    key = "|".join(["v2", TOWER.package, *(str(x.path) for x in items)])

    def compute() -> np.ndarray:
        from xmodal.models.lite.runtime import image_runner

        run = image_runner(TOWER, runtime="onnx", num_threads=threads)
        batches = [items[i : i + 32] for i in range(0, len(items), 32)]
        return np.concatenate([run(np.stack([_prepare(x.path) for x in b])) for b in batches])

    return cached("v2-logits", key, compute).astype(np.float32)


# Colour names a pixel can get (near-white is paper or padding here, so never a colour), and
# their texts, written like class texts so the text towers place them as they place classes.
COLOURS = {
    "red": "red: the colour of blood, ripe tomatoes and fire engines",
    "orange": "orange: the colour of oranges, carrots and pumpkins",
    "yellow": "yellow: the colour of lemons, bananas and sunflowers",
    "green": "green: the colour of grass, leaves and limes",
    "blue": "blue: the colour of the clear sky and the deep sea",
    "purple": "purple, violet: the colour of grapes, plums and lavender",
    "pink": "pink: the colour of roses, flamingos and candy floss",
    "brown": "brown: the colour of wood, chocolate and soil",
    "black": "black: the colour of coal, soot and the night sky",
    "grey": "grey, gray: the colour of ash, concrete and storm clouds",
}
COLOUR_WORDS = frozenset({*COLOURS, "gray"})
SIDE = 56  # colours are read off a SIDE x SIDE thumbnail


def colour_shares(items: list[Item]) -> np.ndarray:
    """(n, len(COLOURS) + 1) share of each picture's non-white pixels per colour name, and last
    1.0 where all four edges are near-white (a drawing or cut-out on paper, not a padded
    photo, which has content on two edges at least), cached."""
    key = "|".join(["colours+edges", *(str(x.path) for x in items)])
    transform = ImageTransform(SIDE, (0, 0, 0), (1, 1, 1), resize_mode="pad")

    def compute() -> np.ndarray:
        return np.stack([_shares(transform(load_image(x.path))) for x in items])

    return cached("v2-colours", key, compute)


def _shares(rgb: np.ndarray) -> np.ndarray:
    """(3, s, s) RGB in [0, 1] -> shares per COLOURS name, by hue, saturation and value."""
    r, g, b = rgb.reshape(3, -1)
    mx, mn = rgb.reshape(3, -1).max(axis=0), rgb.reshape(3, -1).min(axis=0)
    fg = mn < 0.94  # not paper, padding or transparency
    sat = np.where(mx > 0, (mx - mn) / np.maximum(mx, 1e-6), 0)
    delta = np.maximum(mx - mn, 1e-6)
    hue = (
        np.select(
            [mx == r, mx == g], [((g - b) / delta) % 6, (b - r) / delta + 2], (r - g) / delta + 4
        )
        * 60
    )
    names = np.full(r.shape, "", dtype=object)
    chromatic = (sat >= 0.25) & (mx >= 0.2)
    names[~chromatic] = np.where(mx[~chromatic] < 0.25, "black", "grey")
    h, v = hue[chromatic], mx[chromatic]
    names[chromatic] = np.select(
        [
            (h < 15) | (h >= 345),
            (h < 45) & (v < 0.6),
            h < 45,
            h < 70,
            h < 165,
            h < 255,
            h < 290,
        ],
        ["red", "brown", "orange", "yellow", "green", "blue", "purple"],
        "pink",
    )
    out = np.array([np.sum(fg & (names == c)) for c in COLOURS], np.float32)
    paper = (~fg).reshape(rgb.shape[1:])
    edges = [paper[0], paper[-1], paper[:, 0], paper[:, -1]]
    on_paper = float(all(e.mean() >= 0.9 for e in edges))
    return np.append(out / max(1, int(fg.sum())), np.float32(on_paper))


def drop_near_duplicates(bank_logits: np.ndarray, held_logits: list[np.ndarray]) -> np.ndarray:
    """Mask over the bank: False where a bank picture is a near-duplicate of a held-out one."""
    b = visual_view(bank_logits)
    keep = np.ones(len(b), bool)
    for h in held_logits:
        keep &= (b @ visual_view(h).T).max(axis=1) < NEAR_DUPLICATE
    return keep
