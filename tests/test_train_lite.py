"""Training the real lite-en model's alignment head on real emoji (Noto colour font) with their
Unicode names as captions: validation recall on held-out captions goes up, and the saved folder
gives the same recall through the ordinary encoder API."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xmodal.errors import InvalidInputError, ModelLoadError
from xmodal.evaluate.retrieval import retrieval_metrics
from xmodal.models import load_model
from xmodal.pairs import group_pairs, load_pairs
from xmodal.samples import emoji_images
from xmodal.train import TrainConfig, TrainMode, train

pytestmark = pytest.mark.slow

# Every other emoji: about 700 pairs, enough for the head to learn, quick to embed.
EVERY = 2
# Epochs over cached vectors take a fraction of a second: most of the time is the image tower.
CONFIG = TrainConfig(epochs=20, batch_size=64, patience=20)


@pytest.fixture(scope="module")
def emoji_pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("emoji")
    items = emoji_images(root / "png")[::EVERY]
    path = root / "pairs.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for item in items:
            f.write(json.dumps({"image": str(item.path), "caption": item.caption}) + "\n")
    return path


@pytest.fixture(scope="module")
def trained(emoji_pairs, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "lite-emoji"
    return train(emoji_pairs, "lite-en", out, CONFIG)


def test_head_training_raises_validation_recall(trained):
    before, after = trained.before, trained.after
    print(
        "lite-en emoji val text->image recall@1/5/10",
        [round(before["text_to_image"][f"recall@{k}"], 3) for k in (1, 5, 10)],
        "->",
        [round(after["text_to_image"][f"recall@{k}"], 3) for k in (1, 5, 10)],
        f"mean recall {before['mean_recall']:.3f} -> {after['mean_recall']:.3f}",
        f"epoch seconds {[round(h['seconds'], 2) for h in trained.card['history']]}",
    )
    assert trained.best_epoch >= 1
    # A clear margin on held-out captions and images, in both directions (measured: +0.13 to
    # +0.29 at recall@5 and @10, mean recall 0.237 -> 0.393).
    for direction in ("text_to_image", "image_to_text"):
        for k in (5, 10):
            assert after[direction][f"recall@{k}"] >= before[direction][f"recall@{k}"] + 0.08
    assert after["mean_recall"] >= before["mean_recall"] + 0.1


def test_the_saved_model_reproduces_the_validation_recall(trained, emoji_pairs):
    model = load_model(str(trained.out))
    assert model.head is not None and model.dim == 384
    _, val = load_pairs(emoji_pairs).split(CONFIG.val_fraction, CONFIG.seed)
    images, texts, relevant = group_pairs(val.pairs)
    metrics = retrieval_metrics(model.embed_images(images), model.embed_texts(texts), relevant)
    for direction in ("text_to_image", "image_to_text"):
        for k in (1, 5, 10):
            expected = trained.after[direction][f"recall@{k}"]
            assert metrics[direction][f"recall@{k}"] == pytest.approx(expected, abs=0.01)
    # Texts are untouched by the head: the same vectors as the base model's.
    base = load_model("lite-en")
    assert np.allclose(model.embed_texts(texts[:5]), base.embed_texts(texts[:5]), atol=1e-6)
    card = json.loads((trained.out / "xmodal-model.json").read_text())
    assert card["base_model"] == "lite-en" and card["mode"]["kind"] == "heads"
    assert card["data"]["fingerprint"] == load_pairs(emoji_pairs).fingerprint()
    assert model.logit_scale == pytest.approx(card["logit_scale"])


def test_lite_trains_its_head_only(emoji_pairs, tmp_path):
    with pytest.raises(InvalidInputError, match="alignment head only"):
        train(emoji_pairs, "lite-en", tmp_path / "m", TrainConfig(mode=TrainMode("all")))


def test_a_head_of_another_size_is_refused(trained, tmp_path):
    import shutil

    from xmodal.models.lite.head import AlignmentHead, save_head

    copy = shutil.copytree(trained.out, tmp_path / "copy")
    save_head(AlignmentHead(16), copy)
    with pytest.raises(ModelLoadError, match="do not belong"):
        load_model(str(copy))
