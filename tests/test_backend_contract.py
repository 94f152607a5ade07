"""One contract suite, run against every backend: what any Encoder must do, whatever it wraps."""

from __future__ import annotations

import numpy as np
import pytest

from checkpoints import save_hf_clip, save_hf_siglip, save_openclip_checkpoint
from xmodal.engine.zeroshot import ZeroShotClassifier
from xmodal.models import load_model

TEXTS = ["a photo of a cat", "बिल्ली की फोटो", "a rocket on the launch pad"]


def _openclip(tmp):
    arch, path = save_openclip_checkpoint(tmp, "safetensors")
    return f"openclip:{arch}/{path}"


BACKENDS = {
    "fake": lambda tmp: "fake:24",
    "lite": lambda tmp: "lite",
    "openclip": _openclip,
    "hf-clip": lambda tmp: f"hf:{save_hf_clip(tmp / 'clip')}",
    "hf-siglip": lambda tmp: f"hf:{save_hf_siglip(tmp / 'siglip')}",
}


@pytest.fixture(scope="module", params=list(BACKENDS))
def encoder(request, tmp_path_factory):
    if request.param != "fake":
        pytest.importorskip("open_clip" if request.param == "openclip" else "transformers")
    name = BACKENDS[request.param](tmp_path_factory.mktemp(request.param))
    return load_model(name)


@pytest.fixture(scope="module")
def image_paths(photos):
    return [p.path for p in photos[:5]]


def test_describes_itself(encoder):
    assert encoder.name and isinstance(encoder.name, str)
    assert isinstance(encoder.dim, int) and encoder.dim > 0
    assert {"text", "image"} <= set(encoder.modalities)
    assert np.isfinite(encoder.logit_scale) and encoder.logit_scale > 0


def test_unit_rows_of_the_right_shape(encoder, image_paths):
    texts = encoder.embed_texts(TEXTS)
    images = encoder.embed_images(image_paths)
    assert texts.shape == (len(TEXTS), encoder.dim) and texts.dtype == np.float32
    assert images.shape == (len(image_paths), encoder.dim) and images.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(images, axis=1), 1.0, atol=1e-5)


def test_deterministic(encoder, image_paths):
    np.testing.assert_array_equal(encoder.embed_texts(TEXTS), encoder.embed_texts(TEXTS))
    np.testing.assert_array_equal(
        encoder.embed_images(image_paths), encoder.embed_images(image_paths)
    )


def test_batching_does_not_change_vectors(encoder, image_paths):
    one = encoder.embed_images(image_paths, batch_size=1)
    all_at_once = encoder.embed_images(image_paths, batch_size=len(image_paths))
    np.testing.assert_allclose(one, all_at_once, atol=1e-5)
    np.testing.assert_allclose(
        encoder.embed_texts(TEXTS, batch_size=1), encoder.embed_texts(TEXTS), atol=1e-5
    )


def test_empty_input(encoder):
    assert encoder.embed_texts([]).shape == (0, encoder.dim)
    assert encoder.embed_images([]).shape == (0, encoder.dim)


def test_zero_shot_runs_on_any_backend(encoder, image_paths):
    clf = ZeroShotClassifier(encoder, "cat, rocket, coffee")
    probs = clf.probabilities(encoder.embed_images(image_paths))
    assert probs.shape == (len(image_paths), 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_prepared_images_embed_like_paths(encoder, image_paths):
    """The indexing pipeline prepares images in worker threads, then embeds them in batches."""
    from xmodal.images import load_image

    prepared = [encoder.prepare_image(load_image(p)) for p in image_paths]
    np.testing.assert_allclose(
        encoder.embed_prepared(prepared), encoder.embed_images(image_paths), atol=1e-6
    )
