"""Dynamic int8 as a load option of the torch backends: real layers swapped, parity on real
inputs, refusals with a reason."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from checkpoints import save_hf_clip, save_openclip_checkpoint
from xmodal.errors import DeviceError, InvalidInputError, ModelLoadError
from xmodal.models.parity import INT8_MIN_COSINE
from xmodal.models.registry import load_model
from xmodal.models.torch_int8 import PROBE_TEXTS, check_quantize, quantize_encoder

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DYNAMIC_LINEAR = torch.ao.nn.quantized.dynamic.Linear


@pytest.fixture(scope="module")
def openclip_name(tmp_path_factory):
    arch, path = save_openclip_checkpoint(tmp_path_factory.mktemp("openclip"))
    return f"openclip:{arch}/{path}"


@pytest.fixture(scope="module")
def hf_name(tmp_path_factory):
    return f"hf:{save_hf_clip(tmp_path_factory.mktemp('hf') / 'clip')}"


@pytest.fixture(scope="module")
def images(photos):
    return [Image.open(p.path).convert("RGB") for p in photos]


def _module_types(model) -> set[type]:
    return {type(m) for m in model.modules()}


def _assert_unit_rows(vectors: np.ndarray) -> None:
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def _assert_passes(report, sides) -> None:
    assert {p.side for p in report.parities} == set(sides)
    for p in report.parities:
        assert p.min_cosine >= INT8_MIN_COSINE, report.describe()


def test_openclip_int8_swaps_its_linear_layers_and_keeps_parity(openclip_name, images):
    fp32 = load_model(openclip_name)
    encoder = load_model(openclip_name, quantize="int8")
    assert encoder.quantized == "int8"
    block = encoder.model.transformer.resblocks[0]
    assert type(block.mlp.c_fc) is DYNAMIC_LINEAR
    assert type(encoder.model.visual.transformer.resblocks[0].mlp.c_proj) is DYNAMIC_LINEAR
    assert torch.nn.Linear not in _module_types(encoder.model)
    report = encoder.quantize_report
    assert "model.transformer.resblocks.0.mlp.c_fc" in report.quantized
    _assert_passes(report, ("text", "image"))
    # Beyond the probes the report measured: other real inputs stay close to fp32 too.
    texts = ["a cat on a sofa", "two dogs", "कुत्ता पार्क में"]
    for side, embed in (("text", "embed_texts"), ("image", "embed_images")):
        inputs = texts if side == "text" else images
        got = getattr(encoder, embed)(inputs)
        _assert_unit_rows(got)
        cosine = (got * getattr(fp32, embed)(inputs)).sum(1)
        assert cosine.min() >= INT8_MIN_COSINE, side


def test_hf_clip_int8_swaps_its_linear_layers_and_keeps_parity(hf_name, images):
    encoder = load_model(hf_name, quantize="int8")
    assert encoder.quantized == "int8"
    layer = encoder.model.text_model.encoder.layers[0]
    assert type(layer.mlp.fc1) is DYNAMIC_LINEAR
    assert type(layer.self_attn.q_proj) is DYNAMIC_LINEAR
    assert type(encoder.model.visual_projection) is DYNAMIC_LINEAR
    _assert_passes(encoder.quantize_report, ("text", "image"))
    _assert_unit_rows(encoder.embed_texts(list(PROBE_TEXTS)))
    _assert_unit_rows(encoder.embed_images(images[:3]))


def test_an_unreachable_threshold_is_refused_and_leaves_fp32(openclip_name, images):
    encoder = load_model(openclip_name)
    before = encoder.embed_texts(["a cat"])
    with pytest.raises(ModelLoadError, match=r"is 0\.9\d+, below 1\.01"):
        quantize_encoder(encoder, probe_images=images[:2], min_cosine=1.01)
    # Refused: every layer is back in float, and the vectors are fp32's own.
    assert DYNAMIC_LINEAR not in _module_types(encoder.model)
    np.testing.assert_array_equal(encoder.embed_texts(["a cat"]), before)


def test_probe_texts_only_measure_the_text_side(hf_name):
    encoder = load_model(hf_name)
    report = quantize_encoder(encoder, probe_texts=["a red car", "एक लाल गाड़ी"], probe_images=[])
    assert [p.side for p in report.parities] == ["text"]
    with pytest.raises(InvalidInputError, match="probe"):
        quantize_encoder(load_model(hf_name), probe_texts=[], probe_images=[])


@pytest.mark.parametrize("value", ["int4", "INT8", "fp16", ""])
def test_unknown_quantize_values_are_invalid_input(openclip_name, hf_name, value):
    for name in (openclip_name, hf_name, "lite-en"):
        with pytest.raises(InvalidInputError, match="quantize"):
            load_model(name, quantize=value)


def test_int8_off_the_cpu_is_a_device_error():
    for device in ("cuda", "cuda:1", "mps"):
        with pytest.raises(DeviceError, match="CPU only"):
            check_quantize("int8", device)
    assert check_quantize(None, "cuda") is None
    assert check_quantize("int8", torch.device("cpu")) == "int8"


def test_lite_on_torch_quantises_minilm_and_keeps_parity_on_real_texts(images):
    fp32 = load_model("lite-en", runtime="torch")
    encoder = load_model("lite-en", runtime="torch", quantize="int8")
    report = encoder.quantize_report
    minilm = encoder.text_towers[0]._embed.model
    assert type(minilm.encoder.layer[0].attention.self.query) is DYNAMIC_LINEAR
    assert any(n.startswith("text_towers.minilm.") for n in report.quantized)
    assert "image_tower._fc" in report.quantized
    _assert_passes(report, ("text", "image"))
    texts = ["a cat sleeping on a sofa", "an old clock tower", "moon over the sea at night"]
    got = encoder.embed_texts(texts)
    _assert_unit_rows(got)
    assert (got * fp32.embed_texts(texts)).sum(1).min() >= INT8_MIN_COSINE
    _assert_unit_rows(encoder.embed_images(images[:2]))


@pytest.mark.parametrize("backend", ["openclip", "hf"])
def test_a_trained_folder_loads_in_int8(backend, openclip_name, hf_name, photos, tmp_path):
    import csv

    from xmodal.train import TrainConfig, train

    pairs = tmp_path / "pairs.csv"
    with open(pairs, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "caption"])
        writer.writerows([p.path, f"a photo of a {p.label}"] for p in photos)
    base = {"openclip": openclip_name, "hf": hf_name}[backend]
    out = tmp_path / "trained"
    train(pairs, base, out, TrainConfig(epochs=1, batch_size=4, val_fraction=0.25))
    # The saved weights are checked against the fp32 model before its layers turn int8.
    encoder = load_model(str(out), quantize="int8")
    assert encoder.quantized == "int8"
    assert DYNAMIC_LINEAR in _module_types(encoder.model)
    _assert_passes(encoder.quantize_report, ("text", "image"))
    _assert_unit_rows(encoder.embed_texts(["a photo of a cat"]))
