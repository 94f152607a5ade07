"""The openclip backend on tiny random checkpoints saved the way users save theirs, loaded by name
through the registry, compared with open_clip's own forward pass on real photos."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest

open_clip = pytest.importorskip("open_clip")
torch = pytest.importorskip("torch")

from checkpoints import (  # noqa: E402
    LOGIT_SCALE,
    add_to_hf_cache,
    register_tiny_openclip_arch,
    save_openclip_checkpoint,
    tiny_openclip_config,
)
from offline import OFFLINE_WAYS, cut_off, error_within_guard, no_network  # noqa: E402
from xmodal.errors import (  # noqa: E402
    DeviceError,
    InvalidInputError,
    ModelLoadError,
    ModelNotFoundError,
)
from xmodal.models import hub, load_model  # noqa: E402
from xmodal.models import openclip as backend  # noqa: E402

TEXTS = ["a photo of a cat", "an astronaut on the moon", "a cup of coffee"]
HUB_TAG = "ViT-B-32/laion2b_s34b_b79k"
HUB_REPO = "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(arch, path) of the tiny checkpoint as .safetensors."""
    return save_openclip_checkpoint(tmp_path_factory.mktemp("openclip"), "safetensors")


@pytest.fixture(scope="module")
def encoder(saved):
    arch, path = saved
    return load_model(f"openclip:{arch}/{path}")


@pytest.fixture(scope="module")
def reference(saved):
    """open_clip's own model, eval transform and tokenizer for the same file."""
    arch, path = saved
    model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=str(path))
    return model.eval(), preprocess, open_clip.get_tokenizer(arch)


def _normalised(x) -> np.ndarray:
    return torch.nn.functional.normalize(x, dim=-1).numpy()


def _open_clip_images(model, preprocess, paths) -> np.ndarray:
    from PIL import Image

    with torch.no_grad():
        pixels = torch.stack([preprocess(Image.open(p)) for p in paths])
        return _normalised(model.encode_image(pixels))


# -- vectors ---------------------------------------------------------------------------------


def test_shapes_dtype_and_unit_rows(encoder, photos):
    texts = encoder.embed_texts(TEXTS)
    images = encoder.embed_images([p.path for p in photos])
    assert encoder.dim == 32
    assert texts.shape == (3, 32) and images.shape == (len(photos), 32)
    for vecs in (texts, images):
        assert vecs.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


def test_same_input_gives_identical_vectors(encoder, photos):
    paths = [p.path for p in photos[:4]]
    assert np.array_equal(encoder.embed_texts(TEXTS), encoder.embed_texts(TEXTS))
    assert np.array_equal(encoder.embed_images(paths), encoder.embed_images(paths))


def test_texts_equal_open_clip(encoder, reference):
    model, _, tokenizer = reference
    with torch.no_grad():
        expected = _normalised(model.encode_text(tokenizer(TEXTS)))
    np.testing.assert_allclose(encoder.embed_texts(TEXTS), expected, atol=1e-5)


def test_real_photos_equal_open_clip(encoder, reference, photos):
    model, preprocess, _ = reference
    paths = [p.path for p in photos]
    expected = _open_clip_images(model, preprocess, paths)
    np.testing.assert_allclose(encoder.embed_images(paths), expected, atol=1e-5)


def test_batch_size_does_not_change_vectors(saved, encoder, photos):
    arch, path = saved
    small = load_model(f"openclip:{arch}/{path}", batch_size=2)
    assert small.batch_size == 2
    paths = [p.path for p in photos[:5]]
    np.testing.assert_allclose(small.embed_images(paths), encoder.embed_images(paths), atol=1e-6)


def test_logit_scale_is_read_from_the_checkpoint(encoder, reference):
    assert encoder.logit_scale == pytest.approx(LOGIT_SCALE, rel=1e-5)
    assert encoder.logit_scale == pytest.approx(
        float(reference[0].logit_scale.detach().exp()), rel=1e-6
    )
    assert encoder.logit_bias is None


def test_name_is_what_the_user_typed_with_the_path_absolute(saved, encoder, monkeypatch):
    arch, path = saved
    assert encoder.name == f"openclip:{arch}/{path}"
    monkeypatch.chdir(path.parent)
    assert load_model(f"openclip:{arch}/./{path.name}").name == f"openclip:{arch}/{path}"


@pytest.mark.parametrize("fmt", ["pt", "training"])
def test_other_checkpoint_formats_load_the_same_weights(fmt, tmp_path, encoder):
    # Same seed, same weights: a torch.save state dict and an open_clip training checkpoint
    # ({"epoch", "state_dict"} with "module." prefixes) must give the safetensors vectors.
    arch, path = save_openclip_checkpoint(tmp_path, fmt)
    other = load_model(f"openclip:{arch}/{path}")
    np.testing.assert_allclose(other.embed_texts(TEXTS), encoder.embed_texts(TEXTS), atol=1e-6)


def test_arch_alone_is_refused_with_how_to_pass_weights(saved):
    arch, _ = saved
    with pytest.raises(ModelNotFoundError) as info:
        load_model(f"openclip:{arch}")
    message = str(info.value)
    for way in ("/TAG", "/path/to/file.safetensors", "hf-hub:ORG/REPO", f"openclip:{arch}/random"):
        assert way in message


def test_arch_alone_names_the_tags_of_a_known_arch():
    with pytest.raises(ModelNotFoundError, match="laion2b_s34b_b79k"):
        load_model("openclip:ViT-B-32")


def test_random_weights_only_when_asked_for(saved, encoder):
    arch, _ = saved
    torch.manual_seed(1)
    first = load_model(f"openclip:{arch}/random")
    torch.manual_seed(2)
    second = load_model(f"openclip:{arch}/random")
    assert first.name == f"openclip:{arch}/random" and first.dim == 32
    vecs = first.embed_texts(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    # Fresh random draws: neither the saved checkpoint's weights nor each other's.
    assert not np.allclose(vecs, encoder.embed_texts(TEXTS), atol=1e-3)
    assert not np.allclose(vecs, second.embed_texts(TEXTS), atol=1e-3)


@pytest.mark.parametrize(
    ("mode", "open_clip_mode"), [("pad", "longest"), ("squash", "squash"), ("crop", "shortest")]
)
def test_resize_modes_equal_open_clip_transforms(mode, open_clip_mode, saved, reference, photos):
    arch, path = saved
    model = reference[0]
    preprocess = open_clip.image_transform(
        64, is_train=False, resize_mode=open_clip_mode, fill_color=0
    )
    paths = [p.path for p in photos if p.name in ("rocket", "grace_hopper", "coins")]
    ours = load_model(f"openclip:{arch}/{path}", resize_mode=mode).embed_images(paths)
    np.testing.assert_allclose(ours, _open_clip_images(model, preprocess, paths), atol=1e-5)


def test_num_threads_option_sets_torch_threads(saved):
    arch, path = saved
    load_model(f"openclip:{arch}/{path}", num_threads=2)
    assert torch.get_num_threads() == 2
    torch.set_num_threads(1)
    with pytest.raises(InvalidInputError, match="num_threads"):
        load_model(f"openclip:{arch}/{path}", num_threads=0)


def test_unknown_resize_mode_is_invalid(saved):
    arch, path = saved
    with pytest.raises(InvalidInputError, match="resize_mode"):
        load_model(f"openclip:{arch}/{path}", resize_mode="stretch")


# -- errors ----------------------------------------------------------------------------------


def test_unknown_arch_suggests_close_names():
    with pytest.raises(ModelNotFoundError, match="ViT-B-32"):
        load_model("openclip:ViT-B-33")


def test_missing_checkpoint_file_is_not_found(saved, tmp_path):
    arch, _ = saved
    with pytest.raises(ModelNotFoundError, match="neither a pretrained tag"):
        load_model(f"openclip:{arch}/{tmp_path / 'nope.safetensors'}")


def test_folder_instead_of_checkpoint_is_not_found(saved, tmp_path):
    arch, _ = saved
    with pytest.raises(ModelNotFoundError, match="is a folder"):
        load_model(f"openclip:{arch}/{tmp_path}")


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_corrupt_checkpoint_is_a_load_error(saved, tmp_path, suffix):
    arch, path = saved
    bad = tmp_path / f"truncated{suffix}"
    bad.write_bytes(path.read_bytes()[:1000] if suffix == ".safetensors" else b"not a checkpoint")
    with pytest.raises(ModelLoadError, match="could not load checkpoint"):
        load_model(f"openclip:{arch}/{bad}")


def test_checkpoint_of_another_architecture_is_a_load_error(saved, tmp_path):
    _, path = saved
    other = register_tiny_openclip_arch(tmp_path, "xmodal-tiny-ViT-e16", embed_dim=16)
    with pytest.raises(ModelLoadError, match="size mismatch"):
        load_model(f"openclip:{other}/{path}")


def test_unavailable_cuda_is_a_device_error(saved):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    arch, path = saved
    with pytest.raises(DeviceError, match="'cuda'"):
        load_model(f"openclip:{arch}/{path}", device="cuda")
    with pytest.raises(DeviceError):
        backend.load(f"{arch}/{path}", device="cuda:1")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_gives_the_cpu_vectors_in_float32(saved, encoder, photos):
    arch, path = saved
    gpu = load_model(f"openclip:{arch}/{path}", device="cuda")
    paths = [p.path for p in photos]
    texts, images = gpu.embed_texts(TEXTS), gpu.embed_images(paths)
    assert texts.dtype == images.dtype == np.float32
    # float16 autocast: within ~1e-3 of the float32 CPU vectors, rows still unit length.
    np.testing.assert_allclose(texts, encoder.embed_texts(TEXTS), atol=5e-3)
    np.testing.assert_allclose(images, encoder.embed_images(paths), atol=5e-3)
    np.testing.assert_allclose(np.linalg.norm(images, axis=1), 1.0, atol=1e-5)


# -- the hub, offline ------------------------------------------------------------------------


@pytest.mark.parametrize("name", [HUB_TAG, f"hf-hub:{HUB_REPO}"])
@pytest.mark.parametrize("how", OFFLINE_WAYS)
def test_uncached_hub_weights_fail_fast_offline(name, how, offline_cache, monkeypatch):
    with contextlib.ExitStack() as stack:
        expected = cut_off(how, monkeypatch, stack)
        error = error_within_guard(lambda: load_model(f"openclip:{name}"))
        assert isinstance(error, ModelLoadError), error
        assert expected in str(error)
        # Says what is missing and how to use a local file instead.
        assert "not in the local Hugging Face cache" in str(error)
        assert "/path/to/file.safetensors" in str(error)


def test_cached_tag_weights_are_used_without_the_hub(offline_cache, monkeypatch):
    # Weights where huggingface_hub caches the tag's download are found with the hub switched off
    # (building ViT-B-32 to load them is left to the checkpoint tests above: it takes seconds).
    snapshot = add_to_hf_cache(offline_cache, HUB_REPO, {"open_clip_model.safetensors": b"w"})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert {i.name: i for i in backend.list_models()}[f"openclip:{HUB_TAG}"].available
    arch, tag = HUB_TAG.split("/")
    weights = backend._tag_weights(arch, tag, open_clip.get_pretrained_cfg(arch, tag))
    assert weights == str(snapshot / "open_clip_model.safetensors")


def test_cached_hf_hub_repo_loads_offline(saved, encoder, offline_cache, monkeypatch, photos):
    _, path = saved
    config = {
        "model_cfg": tiny_openclip_config(),
        "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3, "resize_mode": "squash"},
    }
    snapshot = add_to_hf_cache(
        offline_cache,
        "xmodal-test/tiny-openclip",
        {"open_clip_config.json": json.dumps(config).encode(), "open_clip_model.safetensors": path},
    )
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = load_model("openclip:hf-hub:xmodal-test/tiny-openclip")
    assert model.name == "openclip:hf-hub:xmodal-test/tiny-openclip" and model.dim == 32
    np.testing.assert_allclose(model.embed_texts(TEXTS), encoder.embed_texts(TEXTS), atol=1e-6)
    # The repository's own preprocessing (SigLIP-style squash, 0.5 mean/std), as open_clip does it.
    ref, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{snapshot}")
    paths = [p.path for p in photos[:6]]
    expected = _open_clip_images(ref.eval(), preprocess, paths)
    np.testing.assert_allclose(model.embed_images(paths), expected, atol=1e-5)


# -- listing ---------------------------------------------------------------------------------


def test_list_models_reports_the_cache_without_the_hub(offline_cache, monkeypatch):
    monkeypatch.setattr(hub, "hub_reachable", no_network)
    infos = {i.name: i for i in backend.list_models()}
    assert len(infos) > 100
    tag = infos[f"openclip:{HUB_TAG}"]
    assert tag.dim == 512 and not tag.available and tag.note == "needs download"
    assert any("path/to/checkpoint" in name for name in infos)
