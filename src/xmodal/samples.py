"""Real sample images with captions: photos that ship inside scikit-image, scikit-learn and
matplotlib, clip-art from openclipart-png and emoji drawn from the Noto colour emoji font.

Used by `xmodal demo`, the tests and the benchmarks: pictures nobody on the project made, each
with the label a person would give it. Clip-art and emoji come with a fixed train/test split by
caption so fine-tuning can train on one part and be measured on the other.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from xmodal.atomic import atomic_write
from xmodal.errors import InvalidInputError, MissingDataError, MissingExtraError


@dataclass(frozen=True)
class SamplePhoto:
    name: str
    label: str
    path: Path


# name -> (label, where it comes from)
PHOTOS: dict[str, tuple[str, str]] = {
    "chelsea": ("cat", "skimage"),
    "coffee": ("cup of coffee", "skimage"),
    "astronaut": ("astronaut", "skimage"),
    "rocket": ("rocket", "skimage"),
    "camera": ("man with a camera", "skimage"),
    "stereo_motorcycle": ("motorcycle", "skimage"),
    "moon": ("moon", "skimage"),
    "coins": ("coins", "skimage"),
    "hubble_deep_field": ("galaxy", "skimage"),
    "horse": ("horse", "skimage"),
    "clock": ("clock", "skimage"),
    "china": ("temple", "sklearn"),
    "flower": ("flower", "sklearn"),
    "grace_hopper": ("woman in uniform", "matplotlib"),
}

# Labels that match none of the photos, so zero-shot has wrong answers to avoid.
DISTRACTOR_LABELS = ("dog", "car", "airplane")


def _pixels(name: str, source: str) -> np.ndarray:
    try:
        if source == "skimage":
            import skimage.data

            pixels = getattr(skimage.data, name)()
            if isinstance(pixels, tuple):  # stereo pairs: keep the left view
                pixels = pixels[0]
        elif source == "sklearn":
            from sklearn.datasets import load_sample_image

            pixels = load_sample_image(f"{name}.jpg")
        else:
            import matplotlib.cbook

            with matplotlib.cbook.get_sample_data(f"{name}.jpg") as f:
                pixels = np.asarray(Image.open(f).convert("RGB"))
    except ImportError as e:
        raise MissingExtraError("the sample photos", "samples", e.name or source) from e
    if pixels.dtype == bool:  # the horse is a silhouette mask
        pixels = np.where(pixels, 0, 255).astype(np.uint8)
    return pixels


def sample_photos(folder: str | Path, names: list[str] | None = None) -> list[SamplePhoto]:
    """Write the sample photos as PNG files into `folder` (kept if already there) and list them."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    photos = []
    for name in names or list(PHOTOS):
        label, source = PHOTOS[name]
        path = folder / f"{name}.png"
        if not path.exists():
            with atomic_write(path, fsync=False) as f:  # concurrent test runs share the folder
                Image.fromarray(_pixels(name, source)).save(f, format="PNG")
        photos.append(SamplePhoto(name, label, path))
    return photos


# -- captioned clip-art and emoji (Debian packages openclipart-png, fonts-noto-color-emoji) --------

OPENCLIPART_ROOT = Path("/usr/share/openclipart/png")
EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
# wamerican: tells real words from the author names that openclipart file names end with.
WORDS_FILE = Path("/usr/share/dict/words")

# Folders of abstract shapes, patterns, logos and UI icons: their names do not describe a picture.
CLIPART_SKIPPED = ("shapes", "special", "computer", "buttons", "logos", "unsorted")
# Code-point blocks of single-code-point pictographic emoji.
EMOJI_BLOCKS = ((0x2600, 0x27C0), (0x1F300, 0x1FB00))
EMOJI_FONT_SIZE = 109  # the one size at which the Noto colour bitmaps exist
TEST_PERCENT = 20
HELD_OUT_CATEGORY_PERCENT = 45
# A few clip-art files are 100+ megapixel posters: over the loader's limit and slow to decode.
CLIPART_MAX_PIXELS = 16_000_000


@dataclass(frozen=True)
class CaptionedImage:
    caption: str
    path: Path
    category: str


def split_of(caption: str) -> str:
    """'train' or 'test', stable across runs and machines: a hash of the caption (~20% test).

    Split by caption, not by image, so no caption seen in training is ever asked about in a test.
    """
    h = hashlib.blake2b(caption.encode("utf-8"), digest_size=8).digest()
    return "test" if int.from_bytes(h, "little") % 100 < TEST_PERCENT else "train"


def held_out_category(category: str) -> bool:
    """True for the clip-art categories (top folders) that benchmarks report on and nothing
    learns from: tools, education, people, science, transportation (a stable hash, ~45%).
    lite's reference bank (models/lite/bank.py) is built from the other categories only."""
    h = hashlib.blake2b(f"category:{category}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") % 100 < HELD_OUT_CATEGORY_PERCENT


def _check_split(split: str | None) -> None:
    if split not in (None, "train", "test"):
        raise InvalidInputError(f"split must be 'train', 'test' or None, got {split!r}")


def _require(path: Path, package: str) -> None:
    if not path.exists():
        raise MissingDataError(f"{path} not found: install the Debian package {package}")


@lru_cache(maxsize=1)
def _english_words() -> frozenset[str]:
    _require(WORDS_FILE, "wamerican")
    # Lower-case entries only: capitalised ones are proper names (Dan, Matthew), i.e. authors.
    lines = WORDS_FILE.read_text(encoding="utf-8").split()
    return frozenset(w for w in lines if w.isalpha() and w.islower())


def clipart_caption(stem: str) -> str:
    """'full_moon_dan_gerhards_01' -> 'full moon': words only, no digits, no author names."""
    words = _english_words()
    tokens = re.split(r"[^a-z]+", stem.lower())
    return " ".join(t for t in tokens if len(t) > 2 and t in words)


def clipart_images(split: str | None = None, root: Path = OPENCLIPART_ROOT) -> list[CaptionedImage]:
    """openclipart-png drawings with a caption from the file name; category = top folder.

    Sorted by path; files whose name has no English word, and huge posters, are left out.
    """
    _check_split(split)
    _require(root, "openclipart-png")
    items = []
    for path in sorted(root.rglob("*.png")):
        category = path.relative_to(root).parts[0]
        if category in CLIPART_SKIPPED:
            continue
        caption = clipart_caption(path.stem)
        if not caption or (split is not None and split_of(caption) != split):
            continue
        width, height = _png_size(path)
        if width * height > CLIPART_MAX_PIXELS:
            continue
        items.append(CaptionedImage(caption, path, category))
    return items


def _png_size(path: Path) -> tuple[int, int]:
    # Width and height from the IHDR chunk, without PIL's decompression-bomb warnings.
    with open(path, "rb") as f:
        header = f.read(24)
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


def emoji_characters() -> list[str]:
    """The single-code-point emoji in the EMOJI_BLOCKS that the Noto font draws, in order."""
    _require(EMOJI_FONT, "fonts-noto-color-emoji")
    from fontTools.ttLib import TTFont  # ships with matplotlib, part of the samples extra

    cmap = TTFont(EMOJI_FONT, lazy=True).getBestCmap()
    return [
        chr(cp)
        for lo, hi in EMOJI_BLOCKS
        for cp in range(lo, hi)
        # Skin-tone modifiers (category Sk) are colour swatches named "type-1-2": not pictures.
        if cp in cmap and unicodedata.name(chr(cp), "") and unicodedata.category(chr(cp)) != "Sk"
    ]


def emoji_images(folder: str | Path, split: str | None = None) -> list[CaptionedImage]:
    """Render the emoji as transparent PNGs into `folder` (kept if already there) and list them.

    caption = the Unicode name in lower case ('cat face'); category = the Unicode block start.
    """
    _check_split(split)
    from PIL import ImageDraw, ImageFont

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    font = None
    items = []
    for ch in emoji_characters():
        caption = unicodedata.name(ch).lower()
        if split is not None and split_of(caption) != split:
            continue
        path = folder / f"emoji_{ord(ch):05x}.png"
        if not path.exists():
            font = font or ImageFont.truetype(str(EMOJI_FONT), EMOJI_FONT_SIZE)
            canvas = Image.new("RGBA", (136, 128), (0, 0, 0, 0))  # the font's bitmap size
            ImageDraw.Draw(canvas).text((0, 0), ch, font=font, embedded_color=True)
            with atomic_write(path, fsync=False) as f:
                canvas.save(f, format="PNG")
        block = next(lo for lo, hi in EMOJI_BLOCKS if lo <= ord(ch) < hi)
        items.append(CaptionedImage(caption, path, f"U+{block:04X}"))
    return items


# CLDR's Hindi names of emoji (Debian unicode-cldr-core): the same pictures, asked about in Hindi.
CLDR_HINDI = Path("/usr/share/unicode/cldr/common/annotations/hi.xml")


@lru_cache(maxsize=1)
def emoji_hindi_names(path: Path = CLDR_HINDI) -> dict[str, str]:
    """Emoji character -> its CLDR Hindi name ("tts" annotation, e.g. 🐱 -> "बिल्ली का चेहरा")."""
    import xml.etree.ElementTree as ET

    _require(path, "unicode-cldr-core")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise MissingDataError(f"{path} is not readable CLDR XML: {e}") from e
    return {
        a.get("cp"): a.text.strip()
        for a in root.iter("annotation")
        if a.get("type") == "tts" and a.get("cp") and a.text and a.text.strip()
    }


# Labelled clip art for moderation: openclipart's weapons, alcohol and a few drug pictures,
# against animals, vegetables and plants.
MODERATION_WEAPONS = (
    "9_mm_gun_01",
    "ak47_01",
    "blue_gun_alex_fernandez_01",
    "bomb_01",
    "kallisti-grenade_2_nurbl_01",
    "katana_dudziak_tomek_01",
    "knife",
    "longsword_01",
    "m16_01",
    "m16_02",
    "sword_01",
    "mortar_01",
)
_MODERATION_DRUGS = (
    "science/medicine/barattolo_di_pillole_arc_01",
    "plants/cannabis_leaf_anonymous_",
    "computer/icons/flat-theme/applications/dopewars-pill",
)
_MODERATION_SAFE = (("animals", 14), ("food/vegetables", 8), ("plants", 10))


def moderation_samples(folder: str | Path, root: Path = OPENCLIPART_ROOT) -> Path:
    """A labelled folder for `xmodal moderate --eval`: weapons/, alcohol/, drugs/ and safe/,
    as symbolic links to openclipart-png drawings. Returns `folder`."""
    _require(root / "tools" / "weapons", "openclipart-png")
    folder = Path(folder)

    def link(target: Path, label: str) -> None:
        (folder / label).mkdir(parents=True, exist_ok=True)
        if not (folder / label / target.name).exists():  # one drawing may be filed twice
            (folder / label / target.name).symlink_to(target)

    for name in MODERATION_WEAPONS:
        link(root / "tools" / "weapons" / f"{name}.png", "weapons")
    for path in sorted((root / "food" / "beverages" / "alcohol").glob("*.png")):
        link(path, "alcohol")
    for name in _MODERATION_DRUGS:
        link(root / f"{name}.png", "drugs")
    for sub, count in _MODERATION_SAFE:
        for path in sorted((root / sub).rglob("*.png"))[:count]:
            link(path, "safe")
    return folder
