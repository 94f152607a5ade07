"""lite-v2: non-Latin queries routed to e5 alone, and the reference bank images borrow from.

Real weights, real emoji and clip art (Debian packages), the shipped bank data checked against a
fresh rebuild of some of its rows.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from xmodal.errors import ModelLoadError
from xmodal.images import load_image
from xmodal.models import load_model
from xmodal.models.lite import VARIANTS
from xmodal.models.lite import bank as bank_module
from xmodal.models.lite.bank import (
    bank_pictures,
    caption_vectors_file,
    dequantise,
    quantise,
    visual_view,
)
from xmodal.models.lite.conse import LiteEncoder
from xmodal.models.lite.language import mostly_non_latin, tower_weights
from xmodal.models.lite.spec import CLASS_ROLE
from xmodal.samples import (
    OPENCLIPART_ROOT,
    clipart_images,
    emoji_hindi_names,
    emoji_images,
    held_out_category,
    split_of,
)

HINDI = ["बिल्ली की फोटो", "लाल गुलाब", "रॉकेट"]
ENGLISH = ["a photo of a cat", "red rose", "rocket 3"]


@pytest.fixture(scope="module")
def v2():
    return load_model("lite-v2")


@pytest.fixture(scope="module")
def emoji(tmp_path_factory):
    return emoji_images(tmp_path_factory.mktemp("emoji"))


# -- routing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("बिल्ली की फोटो", True),
        ("किताब 42!", True),
        ("a photo of a cat", False),
        ("photo of बिल्ली", False),  # more Latin letters than Devanagari ones
        ("猫の写真", True),
        ("café crème brûlée", False),  # accented letters are Latin too
        ("phở bò", False),
        ("кошка", True),
        ("123 ?!", False),  # no letters: nothing to route on
        ("", False),
    ],
)
def test_script_detection(text, expected):
    assert mostly_non_latin(text) is expected


def test_devanagari_queries_go_to_e5_alone_and_weights_stay_unit():
    w = tower_weights(HINDI + ENGLISH, ("minilm", "e5"), route=True)
    np.testing.assert_allclose(w[:3], [[0.0, 1.0]] * 3)
    np.testing.assert_allclose(w[3:], [[2**-0.5, 2**-0.5]] * 3, rtol=1e-6)
    np.testing.assert_allclose((w**2).sum(axis=1), 1.0, rtol=1e-6)
    # Without routing, or with no multilingual tower to route to, nothing changes.
    assert np.allclose(tower_weights(HINDI, ("minilm", "e5"), route=False), 2**-0.5)
    assert np.allclose(tower_weights(HINDI, ("minilm",), route=True), 1.0)


def test_hindi_query_vector_is_e5s_and_english_is_lites(v2, lite):
    lite_e5 = load_model("lite-e5")
    hindi = v2.embed_texts(HINDI)
    assert np.abs(hindi[:, :384]).max() == 0  # MiniLM's noise is gone
    np.testing.assert_allclose(hindi[:, 384:], lite_e5.embed_texts(HINDI), atol=1e-5)
    np.testing.assert_allclose(v2.embed_texts(ENGLISH), lite.embed_texts(ENGLISH), atol=1e-5)
    mixed = v2.embed_texts([HINDI[0], ENGLISH[0]])  # one batch, each query routed on its own
    np.testing.assert_allclose(
        mixed, np.stack([hindi[0], lite.embed_texts(ENGLISH[:1])[0]]), atol=1e-5
    )


# -- the shipped bank ---------------------------------------------------------------------------


def test_bank_holds_only_train_captions_that_no_reported_picture_carries():
    rows = bank_pictures()
    assert len(rows) > 2000
    assert {r.source for r in rows} == {"emoji", "openclipart"}
    assert all(split_of(r.caption) == "train" for r in rows)
    drawings = [r for r in rows if r.source == "openclipart"]
    assert not any(held_out_category(r.ref.split("/")[0]) for r in drawings)
    held = {x.caption for x in clipart_images() if held_out_category(x.category)}
    assert not held & {r.caption for r in drawings}


def _picture(row, emoji_folder) -> Path:
    if row.source == "emoji":
        return emoji_folder / f"emoji_{int(row.ref[2:], 16):05x}.png"
    return OPENCLIPART_ROOT / row.ref


def test_shipped_bank_matches_a_fresh_rebuild_of_sampled_rows(v2, emoji):
    rows = bank_pictures()
    rng = np.random.default_rng(0)
    picked = [int(i) for i in rng.choice(len(rows), 24, replace=False)]
    assert {rows[i].source for i in picked} == {"emoji", "openclipart"}
    folder = emoji[0].path.parent
    pictures = [load_image(_picture(rows[i], folder)) for i in picked]
    views = visual_view(v2.image_logits(pictures))
    np.testing.assert_allclose(views @ v2.bank.basis.T, v2.bank.features[picked], atol=5e-3)
    # The caption vectors: each text tower, against the tower itself.
    texts = [rows[i].caption for i in picked]
    for tower in v2.text_towers:
        role = CLASS_ROLE[tower.name]
        with np.load(caption_vectors_file(tower.name, role)) as z:
            stored = dequantise({"q": z["q"][picked], "scale": z["scale"][picked]})
        np.testing.assert_allclose(stored, tower.embed(texts, role), atol=6e-3)


def test_quantised_caption_vectors_round_trip():
    x = np.random.default_rng(1).normal(size=(50, 384)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    back = dequantise(quantise(x))
    assert np.abs(back - x).max() <= np.abs(x).max(axis=1).max() / 254 + 1e-6


@pytest.mark.parametrize("damage", ["not a zip", "wrong arrays", "missing"])
def test_a_damaged_bank_file_is_a_load_error(tmp_path, monkeypatch, damage):
    broken = tmp_path / "bank_visual.npz"
    if damage == "not a zip":
        broken.write_bytes(b"PK\x03\x04 not really a zip")
    elif damage == "wrong arrays":
        np.savez(broken, something=np.zeros(3))
    monkeypatch.setattr(bank_module, "VISUAL_FILE", broken)
    with pytest.raises(ModelLoadError, match="build_lite_data"):
        LiteEncoder(VARIANTS["lite-v2"])


# -- what the bank does to images -------------------------------------------------------------


def test_photos_borrow_nothing_and_drawings_do(v2, lite, photos, emoji):
    """The floor is set from real photos (nine in ten wallpapers borrow nothing): nearly all
    sample photos keep lite's own vectors, while emoji (what the bank holds) borrow; with the
    floor out of reach nothing borrows at all."""
    photo_logits = v2.image_logits([load_image(p.path) for p in photos])
    lent = np.linalg.norm(v2.bank.lend(photo_logits), axis=1)
    assert (lent == 0).mean() >= 0.9, [p.name for p, x in zip(photos, lent) if x]
    same = lent == 0
    np.testing.assert_allclose(
        v2.conse_from_logits(photo_logits[same]),
        lite.conse_from_logits(photo_logits[same]),
        atol=1e-6,
    )
    held = [x for x in emoji if split_of(x.caption) == "test"][::8]  # none is in the bank
    emoji_logits = v2.image_logits([load_image(x.path) for x in held])
    moved = np.abs(v2.conse_from_logits(emoji_logits) - lite.conse_from_logits(emoji_logits))
    assert (moved.max(axis=1) > 1e-2).mean() > 0.5
    aloof = dataclasses.replace(
        VARIANTS["lite-v2"], bank=dataclasses.replace(VARIANTS["lite-v2"].bank, floor=0.99)
    )
    np.testing.assert_allclose(
        LiteEncoder(aloof).conse_from_logits(emoji_logits),
        lite.conse_from_logits(emoji_logits),
        atol=1e-6,
    )


def test_bank_finds_emoji_it_never_saw_better_than_lite(v2, lite, emoji):
    """Held-out emoji (test split, captions the bank never holds): text -> image recall."""
    held = [x for x in emoji if split_of(x.caption) == "test"][::2]
    assert len(held) > 80
    logits = v2.image_logits([load_image(x.path) for x in held])
    texts = [x.caption for x in held]

    def recall_at_10(model) -> float:
        sim = model.embed_texts(texts) @ model.conse_from_logits(logits).T
        rank = (sim > np.diag(sim)[:, None]).sum(axis=1)
        return float((rank < 10).mean())

    old, new = recall_at_10(lite), recall_at_10(v2)
    assert new > old + 0.1, (old, new)


def test_bank_and_routing_find_emoji_asked_about_in_hindi_better_than_lite(v2, lite, emoji):
    """The same held-out emoji asked about by their CLDR Hindi names."""
    hindi = emoji_hindi_names()
    held = [x for x in emoji if split_of(x.caption) == "test" and _char(x) in hindi][::2]
    assert len(held) > 80
    logits = v2.image_logits([load_image(x.path) for x in held])
    texts = [hindi[_char(x)] for x in held]

    def recall_at_10(model) -> float:
        sim = model.embed_texts(texts) @ model.conse_from_logits(logits).T
        return float(((sim > np.diag(sim)[:, None]).sum(axis=1) < 10).mean())

    old, new = recall_at_10(lite), recall_at_10(v2)
    assert new > old + 0.1, (old, new)


def _char(item) -> str:
    return chr(int(item.path.stem.split("_")[1], 16))
