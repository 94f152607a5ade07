"""The hf backend on tiny random CLIP and SigLIP checkpoints saved with save_pretrained, loaded by
name through the registry, compared with transformers' own processors and feature methods."""

from __future__ import annotations

import contextlib
import json
import shutil

import numpy as np
import pytest

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from PIL import Image  # noqa: E402

from checkpoints import (  # noqa: E402
    CLIP_VOCAB_SIZE,
    LOGIT_BIAS,
    LOGIT_SCALE,
    add_to_hf_cache,
    save_hf_clip,
    save_hf_siglip,
)
from offline import OFFLINE_WAYS, cut_off, error_within_guard, no_network  # noqa: E402
from xmodal.errors import (  # noqa: E402
    DeviceError,
    InvalidInputError,
    ModelLoadError,
    ModelNotFoundError,
)
from xmodal.models import hf as backend  # noqa: E402
from xmodal.models import hub, load_model  # noqa: E402

TEXTS = ["a photo of a cat", "an astronaut riding a horse on the moon", "a cup of coffee"]
KINDS = ["clip", "siglip"]
DIMS = {"clip": 16, "siglip": 32}
MODEL_CLASSES = {"clip": transformers.CLIPModel, "siglip": transformers.SiglipModel}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {"clip": save_hf_clip(root / "clip"), "siglip": save_hf_siglip(root / "siglip")}


@pytest.fixture(scope="module")
def encoders(folders):
    return {kind: load_model(f"hf:{folder}") for kind, folder in folders.items()}


@pytest.fixture(scope="module")
def references(folders):
    """transformers' own model, tokenizer and image processors (PIL and default backends)."""
    out = {}
    for kind, folder in folders.items():
        out[kind] = {
            "model": MODEL_CLASSES[kind].from_pretrained(folder).eval(),
            "tokenizer": transformers.AutoTokenizer.from_pretrained(folder),
            "pil": transformers.AutoImageProcessor.from_pretrained(folder, backend="pil"),
            "default": transformers.AutoImageProcessor.from_pretrained(folder),
        }
    return out


@pytest.fixture(scope="module")
def images(photos):
    return [Image.open(p.path).convert("RGB") for p in photos]


def _normalised(x) -> np.ndarray:
    return torch.nn.functional.normalize(x, dim=-1).numpy()


def _image_features(model, pixel_values) -> np.ndarray:
    with torch.no_grad():
        return _normalised(model.get_image_features(pixel_values=pixel_values).pooler_output)


# -- the saved checkpoints are realistic ---------------------------------------------------


def test_clip_tokenizer_is_the_real_bpe(references):
    tokenizer = references["clip"]["tokenizer"]
    assert len(tokenizer) == CLIP_VOCAB_SIZE
    ids = tokenizer("a photo of a cat")["input_ids"]
    # <|startoftext|> a photo of a cat <|endoftext|>, the ids open_clip's tokenizer gives
    assert ids == [49406, 320, 1125, 539, 320, 2368, 49407]


def test_siglip_tokenizer_splits_words_and_ends_with_eos(references):
    tokenizer = references["siglip"]["tokenizer"]
    ids = tokenizer("a photo of a tabby cat")["input_ids"]
    assert len(tokenizer) > 500 and len(ids) > 4
    assert ids[-1] == tokenizer.eos_token_id == tokenizer.pad_token_id


# -- vectors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_shapes_dtype_and_unit_rows(kind, encoders, photos):
    encoder = encoders[kind]
    texts = encoder.embed_texts(TEXTS)
    vecs = encoder.embed_images([p.path for p in photos])
    assert encoder.dim == DIMS[kind]
    assert texts.shape == (3, DIMS[kind]) and vecs.shape == (len(photos), DIMS[kind])
    for v in (texts, vecs):
        assert v.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_same_input_gives_identical_vectors(kind, encoders, images):
    encoder = encoders[kind]
    assert np.array_equal(encoder.embed_texts(TEXTS), encoder.embed_texts(TEXTS))
    assert np.array_equal(encoder.embed_images(images[:2]), encoder.embed_images(images[:2]))


@pytest.mark.parametrize("kind", KINDS)
def test_texts_equal_get_text_features(kind, encoders, references):
    ref = references[kind]
    if kind == "siglip":
        # SigLIP's recipe: pad to the full length, no attention mask.
        inputs = ref["tokenizer"](
            TEXTS, padding="max_length", truncation=True, max_length=16, return_tensors="pt"
        )
        inputs = {"input_ids": inputs["input_ids"]}
    else:
        inputs = ref["tokenizer"](TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = _normalised(ref["model"].get_text_features(**inputs).pooler_output)
    np.testing.assert_allclose(encoders[kind].embed_texts(TEXTS), expected, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_a_text_does_not_depend_on_its_batch(kind, encoders):
    encoder = encoders[kind]
    alone = encoder.embed_texts(["a cat"])
    batched = encoder.embed_texts(["a cat", "a very long sentence " * 20])
    np.testing.assert_allclose(alone[0], batched[0], atol=1e-6)


@pytest.fixture(scope="module")
def pixels(encoders, references, images):
    """The 14 photos through our transform and through both transformers image processors."""
    return {
        kind: {
            "ours": encoders[kind]._pixels(images),
            "pil": references[kind]["pil"](images=images, return_tensors="pt")["pixel_values"],
            "default": references[kind]["default"](images=images, return_tensors="pt")[
                "pixel_values"
            ],
        }
        for kind in KINDS
    }


@pytest.mark.parametrize("kind", KINDS)
def test_pixels_equal_the_processor(kind, pixels):
    # Our transform reproduces the PIL image processor; the default (torchvision) one resizes
    # tensors with its own antialiasing, so it agrees only to within resampling noise.
    ours, pil, default = (pixels[kind][k] for k in ("ours", "pil", "default"))
    np.testing.assert_allclose(ours, pil.numpy(), atol=1e-6)
    assert np.abs(ours - default.numpy()).mean() < 1e-3


@pytest.mark.parametrize("kind", KINDS)
def test_real_photos_equal_get_image_features(kind, encoders, references, pixels, photos):
    model = references[kind]["model"]
    ours = encoders[kind].embed_images([p.path for p in photos])
    np.testing.assert_allclose(ours, _image_features(model, pixels[kind]["pil"]), atol=1e-6)
    np.testing.assert_allclose(ours, _image_features(model, pixels[kind]["default"]), atol=5e-3)


@pytest.mark.parametrize("kind", KINDS)
def test_logit_scale_and_bias_are_read_from_the_model(kind, encoders):
    encoder = encoders[kind]
    assert encoder.logit_scale == pytest.approx(LOGIT_SCALE, rel=1e-5)
    if kind == "siglip":
        assert encoder.logit_bias == pytest.approx(LOGIT_BIAS)
    else:
        assert encoder.logit_bias is None


def test_resize_mode_overrides_the_processor(folders, encoders, images):
    wide = [im for im in images if im.width > 1.3 * im.height][:2]
    padded = load_model(f"hf:{folders['clip']}", resize_mode="pad")
    assert not np.allclose(padded.embed_images(wide), encoders["clip"].embed_images(wide))
    with pytest.raises(InvalidInputError, match="resize_mode"):
        load_model(f"hf:{folders['clip']}", resize_mode="stretch")


# -- errors ----------------------------------------------------------------------------------


def test_missing_folder_is_not_found(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        load_model(f"hf:{tmp_path / 'no' / 'such' / 'model'}")


def test_a_file_is_not_a_model_folder(folders):
    with pytest.raises(ModelNotFoundError, match="is a file"):
        load_model(f"hf:{folders['clip'] / 'config.json'}")


def test_empty_folder_is_a_load_error(tmp_path):
    with pytest.raises(ModelLoadError, match="save_pretrained"):
        load_model(f"hf:{tmp_path}")


def test_corrupt_weights_are_a_load_error(folders, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(folders["clip"], broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:2000])
    with pytest.raises(ModelLoadError, match="could not load"):
        load_model(f"hf:{broken}")


def test_config_without_weights_is_refused_not_random(folders, tmp_path):
    # Everything but the weights: transformers would refuse too; random weights never load.
    bare = tmp_path / "bare"
    shutil.copytree(folders["clip"], bare, ignore=shutil.ignore_patterns("*.safetensors"))
    with pytest.raises(ModelLoadError, match="save_pretrained"):
        load_model(f"hf:{bare}")


@pytest.mark.parametrize("kind", KINDS)
def test_partial_weights_are_refused_not_filled_with_random(kind, folders, tmp_path):
    from safetensors.torch import load_file, save_file

    partial = tmp_path / "partial"
    shutil.copytree(folders[kind], partial)
    weights = load_file(partial / "model.safetensors")
    dropped = sorted(k for k in weights if "vision_model" in k)
    save_file({k: v for k, v in weights.items() if k not in dropped}, partial / "model.safetensors")
    with pytest.raises(ModelLoadError, match="which would be random") as info:
        load_model(f"hf:{partial}")
    assert dropped[0] in str(info.value)


def test_unavailable_cuda_is_a_device_error(folders):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(DeviceError, match="'cuda'"):
        load_model(f"hf:{folders['clip']}", device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("kind", KINDS)
def test_cuda_gives_the_cpu_vectors_in_float32(kind, folders, encoders, photos):
    gpu = load_model(f"hf:{folders[kind]}", device="cuda")
    paths = [p.path for p in photos]
    texts, images = gpu.embed_texts(TEXTS), gpu.embed_images(paths)
    assert texts.dtype == images.dtype == np.float32
    np.testing.assert_allclose(texts, encoders[kind].embed_texts(TEXTS), atol=5e-3)
    np.testing.assert_allclose(images, encoders[kind].embed_images(paths), atol=5e-3)


@pytest.mark.parametrize(("model_type", "says"), [("bert", "'bert' model"), ("siglip2", "NaFlex")])
def test_other_architectures_are_refused(model_type, says, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type}))
    with pytest.raises(ModelLoadError, match=says):
        load_model(f"hf:{tmp_path}")


@pytest.mark.parametrize("how", OFFLINE_WAYS)
def test_uncached_hub_name_fails_fast_offline(how, offline_cache, monkeypatch):
    with contextlib.ExitStack() as stack:
        expected = cut_off(how, monkeypatch, stack)
        error = error_within_guard(lambda: load_model("hf:openai/clip-vit-base-patch32"))
        assert isinstance(error, ModelLoadError), error
        assert expected in str(error)
        assert "not in the local Hugging Face cache" in str(error)
        assert "save_pretrained" in str(error)


@pytest.mark.parametrize("kind", KINDS)
def test_cached_hub_repo_loads_without_the_hub(kind, folders, encoders, offline_cache, monkeypatch):
    # Laid out as a download would be; the hub itself is unreachable, HF_HUB_OFFLINE is not set.
    import huggingface_hub.constants

    repo = f"xmodal-test/tiny-{kind}"
    files = {p.name: p for p in folders[kind].iterdir()}
    add_to_hf_cache(offline_cache, repo, files)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    model = load_model(f"hf:{repo}")
    assert model.name == f"hf:{repo}"
    np.testing.assert_allclose(model.embed_texts(TEXTS), encoders[kind].embed_texts(TEXTS), atol=0)
    listed = {i.name: i for i in backend.list_models()}
    assert listed[f"hf:{repo}"].available and listed[f"hf:{repo}"].dim == DIMS[kind]
    assert kind in listed[f"hf:{repo}"].note


# -- listing ---------------------------------------------------------------------------------


def test_list_models_reports_the_cache_without_the_hub(offline_cache, monkeypatch):
    monkeypatch.setattr(hub, "hub_reachable", no_network)
    infos = {i.name: i for i in backend.list_models()}
    known = infos["hf:openai/clip-vit-base-patch32"]
    assert known.dim == 512 and not known.available and known.note == "needs download"
    assert infos["hf:google/siglip-base-patch16-224"].dim == 768
    assert "hf:path/to/folder" in infos


def test_list_models_survives_a_broken_cache(offline_cache):
    (offline_cache / "models--broken--repo").write_text("not a folder")
    assert backend.list_models()
