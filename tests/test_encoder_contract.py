"""The Encoder base class: what every backend gets for free (checked with the fake encoder)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from xmodal.errors import ImageLoadError, InvalidInputError, UnsupportedModalityError
from xmodal.models.base import TEXT, l2_normalize
from xmodal.models.fake import FakeEncoder


def test_rows_are_unit_float32(fake_encoder, photos):
    texts = fake_encoder.embed_texts(["a cat", "a dog on a sofa", "सूर्यास्त"])
    images = fake_encoder.embed_images([p.path for p in photos[:4]])
    for vecs, n in ((texts, 3), (images, 4)):
        assert vecs.dtype == np.float32
        assert vecs.shape == (n, fake_encoder.dim)
        np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-6)


def test_batch_size_does_not_change_results(fake_encoder, photos):
    paths = [p.path for p in photos]
    one = fake_encoder.embed_images(paths, batch_size=1)
    many = fake_encoder.embed_images(paths, batch_size=5)
    # BLAS may sum in another order for another batch shape: equal to float32 rounding.
    np.testing.assert_allclose(one, many, atol=1e-6)
    texts = [f"photo number {i}" for i in range(70)]
    np.testing.assert_allclose(
        fake_encoder.embed_texts(texts, batch_size=3),
        fake_encoder.embed_texts(texts, batch_size=64, progress=True),
        atol=1e-6,
    )


def test_deterministic_across_instances(photos):
    a, b = FakeEncoder(dim=16), FakeEncoder(dim=16)
    np.testing.assert_array_equal(a.embed_texts(["red car"]), b.embed_texts(["red car"]))
    np.testing.assert_array_equal(
        a.embed_images([photos[0].path]), b.embed_images([photos[0].path])
    )


def test_path_bytes_and_pil_inputs_agree(fake_encoder, photos):
    path = photos[0].path
    from_path = fake_encoder.embed_image(path)
    from_str = fake_encoder.embed_image(str(path))
    from_bytes = fake_encoder.embed_image(path.read_bytes())
    from_pil = fake_encoder.embed_image(Image.open(path))
    for other in (from_str, from_bytes, from_pil):
        np.testing.assert_array_equal(from_path, other)


def test_empty_inputs_give_empty_matrix(fake_encoder):
    assert fake_encoder.embed_texts([]).shape == (0, fake_encoder.dim)
    assert fake_encoder.embed_images([]).shape == (0, fake_encoder.dim)


@pytest.mark.parametrize("bad", [[""], ["   "], ["ok", "\n"], [3]])
def test_bad_texts_raise_typed_error(fake_encoder, bad):
    with pytest.raises(InvalidInputError):
        fake_encoder.embed_texts(bad)


def test_a_bare_string_is_refused(fake_encoder):
    with pytest.raises(InvalidInputError, match="list of strings"):
        fake_encoder.embed_texts("a cat")


def test_unreadable_image_names_the_path(fake_encoder, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    with pytest.raises(ImageLoadError) as err:
        fake_encoder.embed_images([bad])
    assert str(bad) in str(err.value)


def test_bad_batch_size(fake_encoder):
    with pytest.raises(InvalidInputError):
        fake_encoder.embed_texts(["a"], batch_size=0)


def test_missing_modality_is_a_typed_error():
    class TextOnly(FakeEncoder):
        modalities = frozenset({TEXT})

    with pytest.raises(UnsupportedModalityError):
        TextOnly().embed_images([Image.new("RGB", (8, 8))])


def test_wrong_backend_shape_is_caught(photos):
    class Broken(FakeEncoder):
        def _encode_texts(self, texts):
            return np.zeros((len(texts) + 1, self.dim))

    with pytest.raises(RuntimeError, match="returned shape"):
        Broken().embed_texts(["a"])


def test_l2_normalize_keeps_zero_rows_finite():
    out = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])
