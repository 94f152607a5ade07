"""Sample data sets: the 14 photos, openclipart drawings and Noto emoji with captions and splits."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from PIL import Image

from xmodal.errors import InvalidInputError
from xmodal.samples import (
    CLIPART_SKIPPED,
    EMOJI_FONT,
    OPENCLIPART_ROOT,
    PHOTOS,
    WORDS_FILE,
    clipart_caption,
    clipart_images,
    emoji_images,
    split_of,
)

needs_clipart = pytest.mark.skipif(
    not (OPENCLIPART_ROOT.exists() and WORDS_FILE.exists()),
    reason="needs Debian packages openclipart-png and wamerican (CI installs them)",
)
needs_emoji = pytest.mark.skipif(
    not EMOJI_FONT.exists(), reason="needs Debian package fonts-noto-color-emoji (CI installs it)"
)
CLEAN = re.compile(r"[a-z]+( [a-z]+)*")  # lower-case words, single spaces, no digits


def test_photos_are_real_rgb_images(photos):
    assert [p.name for p in photos] == list(PHOTOS)
    for p in photos:
        with Image.open(p.path) as im:
            assert im.mode in ("RGB", "L") and min(im.size) >= 64


# Pinned: a change of hash, encoding or threshold would move captions between train and test
# and silently change every figure measured on the test split.
PINNED_SPLITS = {
    "cat face": "test",
    "full moon": "test",
    "snowman": "train",
    "red apple": "train",
    "stop sign angled": "train",
    "grinning face": "train",
}


def test_split_is_pinned_per_caption():
    assert {c: split_of(c) for c in PINNED_SPLITS} == PINNED_SPLITS


def test_split_does_not_depend_on_the_process():
    # Python's own str hash changes with PYTHONHASHSEED; the split must not.
    code = (
        "import json, sys; from xmodal.samples import split_of; "
        "print(json.dumps({c: split_of(c) for c in json.loads(sys.argv[1])}))"
    )
    for seed in ("0", "12345"):
        out = subprocess.run(
            [sys.executable, "-c", code, json.dumps(list(PINNED_SPLITS))],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )
        assert json.loads(out.stdout) == PINNED_SPLITS


def test_split_is_about_a_fifth_and_only_train_or_test():
    words = [f"caption {i}" for i in range(5000)]
    splits = [split_of(w) for w in words]
    assert set(splits) == {"train", "test"}
    assert 0.18 < splits.count("test") / len(words) < 0.22


def test_bad_split_name_is_rejected(tmp_path):
    with pytest.raises(InvalidInputError, match="split"):
        emoji_images(tmp_path, split="validation")


@needs_clipart
def test_clipart_captions_drop_digits_and_author_names():
    assert clipart_caption("full_moon_dan_gerhards_01") == "full moon"
    assert clipart_caption("stop-sign-angled_01") == "stop sign angled"
    assert clipart_caption("chemistry_flask_matthew__02") == "chemistry flask"
    assert clipart_caption("cigno_architetto_frances_01") == ""  # Italian title, author only


@needs_clipart
def test_clipart_set_size_captions_and_disjoint_split():
    items = clipart_images()
    assert 2900 <= len(items) <= 3100  # 3013 with openclipart-png 0.18
    assert all(CLEAN.fullmatch(x.caption) for x in items)
    assert not {x.category for x in items} & set(CLIPART_SKIPPED)
    train, test = clipart_images("train"), clipart_images("test")
    assert len(train) + len(test) == len(items)
    assert not {x.caption for x in train} & {x.caption for x in test}
    assert test == clipart_images("test")


@needs_emoji
def test_emoji_render_with_colour_and_split_by_caption(tmp_path):
    test = emoji_images(tmp_path, split="test")
    assert 200 <= len(test) <= 300  # 244 of 1275 with fonts-noto-color-emoji 2.042
    assert all(CLEAN.fullmatch(x.caption.replace("-", " ")) for x in test)
    cat = next(x for x in emoji_images(tmp_path) if x.caption == "cat face")
    with Image.open(cat.path) as im:
        assert im.mode == "RGBA"
        assert im.getchannel("A").getextrema() == (0, 255)  # transparent margin, opaque glyph
        r, g, b, _ = im.convert("RGBA").getpixel((68, 64))
        assert max(r, g, b) - min(r, g, b) > 30  # coloured, not a black outline glyph
    train = emoji_images(tmp_path, split="train")
    assert not {x.caption for x in train} & {x.caption for x in test}
