"""lite's alignment head: the identity until trained, saved and loaded safely, images only."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from xmodal.errors import InvalidInputError, ModelLoadError
from xmodal.images import load_image
from xmodal.models.lite.head import CONFIG_FILE, WEIGHTS_FILE, AlignmentHead, load_head, save_head


def _unit_rows(n: int, dim: int, seed: int = 0) -> torch.Tensor:
    x = torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.normalize(x, dim=-1)


def _trained_like(dim: int = 16, **config) -> AlignmentHead:
    """A head with every weight non-zero, as after training."""
    head = AlignmentHead(dim, hidden=8, **config)
    with torch.no_grad():
        for i, p in enumerate(head.parameters()):
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(i)) * 0.3)
    return head.eval()


# -- the module alone ------------------------------------------------------------------------------


@pytest.mark.parametrize("gate", [False, True])
def test_untrained_head_is_the_identity(gate):
    head = AlignmentHead(16, hidden=8, gate=gate)
    x = _unit_rows(5, 16)
    assert torch.equal(head.delta(x), torch.zeros(5, 16))
    torch.testing.assert_close(head(x), x, atol=1e-6, rtol=0)


def test_trained_head_returns_unit_rows_and_mix_scales_the_correction():
    x = _unit_rows(5, 16)
    full, half = _trained_like(), _trained_like(mix=0.5)
    torch.testing.assert_close(half.delta(x), 0.5 * full.delta(x))
    for head in (full, half):
        y = head(x)
        assert not torch.allclose(y, x)
        torch.testing.assert_close(y.norm(dim=1), torch.ones(5))


@pytest.mark.parametrize("config", [{"dim": 0}, {"dim": 4, "hidden": 0}, {"dim": 4, "mix": 1.5}])
def test_bad_config_is_refused(config):
    with pytest.raises(InvalidInputError):
        AlignmentHead(**config)


# -- saving and loading ----------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path):
    head = _trained_like(gate=True, mix=0.7)
    loaded = load_head(save_head(head, tmp_path / "h"))
    assert loaded.config == head.config == {"dim": 16, "hidden": 8, "mix": 0.7, "gate": True}
    assert not loaded.training
    x = _unit_rows(4, 16)
    assert torch.equal(loaded(x), head(x))


def test_missing_folder_is_a_load_error(tmp_path):
    with pytest.raises(ModelLoadError, match="cannot read"):
        load_head(tmp_path / "nothing")


def test_truncated_weights_are_a_load_error(tmp_path):
    folder = save_head(_trained_like(), tmp_path / "h")
    weights = folder / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(ModelLoadError, match="damaged"):
        load_head(folder)


def test_garbled_description_is_a_load_error(tmp_path):
    folder = save_head(_trained_like(), tmp_path / "h")
    (folder / CONFIG_FILE).write_text("{not json")
    with pytest.raises(ModelLoadError):
        load_head(folder)
    (folder / CONFIG_FILE).write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ModelLoadError, match="not a"):
        load_head(folder)


def test_weights_that_do_not_fit_the_config_are_a_load_error(tmp_path):
    folder = save_head(_trained_like(), tmp_path / "h")
    meta = json.loads((folder / CONFIG_FILE).read_text())
    for config in ({**meta["config"], "hidden": 9}, {**meta["config"], "gate": True}, {"size": 3}):
        (folder / CONFIG_FILE).write_text(json.dumps({**meta, "config": config}))
        with pytest.raises(ModelLoadError, match="does not fit"):
            load_head(folder)


# -- inside the lite encoder, on real photos -------------------------------------------------------


def test_untrained_head_leaves_lite_vectors_bit_for_bit(lite, photos, monkeypatch):
    paths = [p.path for p in photos]
    plain = lite.embed_images(paths)
    monkeypatch.setattr(lite, "head", AlignmentHead(lite.dim).eval())
    assert np.array_equal(lite.embed_images(paths), plain)


def test_head_changes_images_only(lite, photos, monkeypatch):
    paths = [p.path for p in photos[:4]]
    plain_images, plain_texts = lite.embed_images(paths), lite.embed_texts(["a cat"])
    head = _trained_like(lite.dim)
    monkeypatch.setattr(lite, "head", head)
    images = lite.embed_images(paths)
    assert np.array_equal(lite.embed_texts(["a cat"]), plain_texts)
    expected = head(torch.from_numpy(plain_images)).detach().numpy()
    np.testing.assert_allclose(images, expected, atol=1e-5)
    assert not np.allclose(images, plain_images, atol=1e-3)


def test_conse_vectors_are_the_head_free_image_vectors(lite, photos):
    prepared = [lite.prepare_image(load_image(p.path)) for p in photos[:4]]
    vecs = lite.conse_vectors(prepared)
    np.testing.assert_allclose(vecs, lite.embed_images([p.path for p in photos[:4]]), atol=1e-6)
    np.testing.assert_array_equal(
        vecs, lite.conse_from_logits(lite.image_logits([load_image(p.path) for p in photos[:4]]))
    )


def test_head_of_the_wrong_size_is_refused(lite):
    from xmodal.models.lite.conse import LiteEncoder

    with pytest.raises(InvalidInputError, match="384-d"):
        LiteEncoder(lite.variant, head=AlignmentHead(384))
