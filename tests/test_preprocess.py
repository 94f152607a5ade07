"""ImageTransform against open_clip's own eval transforms, on real photos and awkward sizes."""

from __future__ import annotations

import ast
import inspect

import numpy as np
import pytest
from PIL import Image

from xmodal.errors import InvalidInputError
from xmodal.models import preprocess
from xmodal.models.preprocess import CLIP_MEAN, CLIP_STD, ImageTransform

open_clip = pytest.importorskip("open_clip")

# (width, height): odd, off by one, very wide / tall, smaller than the output, a single pixel, and
# long sides that int() and round() scale differently (302 at 224, 301 at 225, 5 at 7).
EDGE_SIZES = [
    (225, 224),
    (224, 225),
    (227, 224),
    (229, 224),
    (224, 224),
    (100, 101),
    (3, 120),
    (120, 3),
    (10, 400),
    (1, 1),
    (50, 30),
    (150, 302),
    (302, 150),
    (150, 301),
    (3, 5),
]


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def edge_images() -> list[Image.Image]:
    return [noise(w, h, seed) for seed, (w, h) in enumerate(EDGE_SIZES)]


@pytest.fixture(scope="module")
def photo_images(photos) -> list[Image.Image]:
    return [Image.open(p.path).convert("RGB") for p in photos]


def assert_matches(ours: ImageTransform, theirs, image: Image.Image) -> None:
    expected = theirs(image).numpy()
    actual = ours(image)
    assert actual.shape == expected.shape, image.size
    assert np.abs(actual - expected).max() <= 1e-5, image.size


# -- parity with open_clip ---------------------------------------------------------------------


def test_crop_matches_open_clip_on_real_photos(photo_images):
    theirs = open_clip.image_transform(224, is_train=False)
    for image in photo_images:
        assert_matches(ImageTransform(224, CLIP_MEAN, CLIP_STD), theirs, image)


@pytest.mark.parametrize("size", [224, 225, 7])
def test_crop_matches_open_clip_on_edge_sizes(size):
    theirs = open_clip.image_transform(size, is_train=False)
    for image in edge_images():
        assert_matches(ImageTransform(size), theirs, image)


def test_crop_matches_open_clip_with_other_mean_and_std(photo_images):
    mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)  # SigLIP-style normalisation
    theirs = open_clip.image_transform(256, is_train=False, mean=mean, std=std)
    for image in photo_images[:3]:
        assert_matches(ImageTransform(256, mean, std), theirs, image)


@pytest.mark.parametrize("size", [224, 7])
def test_pad_matches_open_clip_longest_mode(photo_images, size):
    theirs = open_clip.image_transform(size, is_train=False, resize_mode="longest", fill_color=0)
    ours = ImageTransform(size, resize_mode="pad", pad_color=(0, 0, 0))
    # open_clip cannot resize a side to 0 pixels; ours keeps at least 1, so skip those.
    fits = [im for im in edge_images() if min(im.size) * size / max(im.size) >= 0.5]
    for image in photo_images[:4] + fits:
        assert_matches(ours, theirs, image)


# -- pad keeps the whole picture ---------------------------------------------------------------


def unnormalise(array: np.ndarray) -> np.ndarray:
    """(3, s, s) model input back to (s, s, 3) pixel values in 0..255."""
    mean = np.asarray(CLIP_MEAN)[:, None, None]
    std = np.asarray(CLIP_STD)[:, None, None]
    return ((array * std + mean) * 255).transpose(1, 2, 0)


def has_colour(pixels: np.ndarray, colour: tuple[int, int, int]) -> bool:
    return bool((np.abs(pixels - colour).max(axis=2) < 30).any())


def banner() -> Image.Image:
    """A wide 400x100 image: red left edge, blue right edge, grey between."""
    image = Image.new("RGB", (400, 100), (128, 128, 128))
    image.paste((255, 0, 0), (0, 0, 40, 100))
    image.paste((0, 0, 255), (360, 0, 400, 100))
    return image


def test_pad_keeps_both_edges_that_crop_cuts_off():
    padded = unnormalise(ImageTransform(64, resize_mode="pad")(banner()))
    cropped = unnormalise(ImageTransform(64, resize_mode="crop")(banner()))
    assert has_colour(padded, (255, 0, 0)) and has_colour(padded, (0, 0, 255))
    assert not has_colour(cropped, (255, 0, 0)) and not has_colour(cropped, (0, 0, 255))


def test_pad_centres_the_image_on_the_pad_colour():
    padded = unnormalise(ImageTransform(64, resize_mode="pad")(banner()))
    # 400x100 -> 64x16, placed at rows 24..39.
    np.testing.assert_allclose(padded[:24], 255, atol=1e-3)
    np.testing.assert_allclose(padded[40:], 255, atol=1e-3)
    np.testing.assert_allclose(padded[32, 32], (128, 128, 128), atol=1)
    green = unnormalise(ImageTransform(64, resize_mode="pad", pad_color=(0, 255, 0))(banner()))
    np.testing.assert_allclose(green[0, 0], (0, 255, 0), atol=1e-3)


# -- shapes, dtypes, inputs, errors ------------------------------------------------------------


@pytest.mark.parametrize("mode", ["crop", "pad"])
def test_shapes_and_dtypes(mode):
    transform = ImageTransform(32, resize_mode=mode)
    images = edge_images()
    single = transform(images[0])
    assert single.shape == (3, 32, 32) and single.dtype == np.float32
    batch = transform.batch(images)
    assert batch.shape == (len(images), 3, 32, 32) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch[0], single)
    assert transform.batch([]).shape == (0, 3, 32, 32)


def test_non_rgb_input_is_converted_like_load_image():
    transparent = Image.new("RGBA", (40, 30), (0, 0, 0, 0))
    white = Image.new("RGB", (40, 30), (255, 255, 255))
    transform = ImageTransform(16)
    np.testing.assert_array_equal(transform(transparent), transform(white))
    gray = Image.new("L", (40, 30), 100)
    np.testing.assert_array_equal(transform(gray), transform(gray.convert("RGB")))


def test_unknown_resize_mode_and_bad_size():
    with pytest.raises(InvalidInputError, match="squash"):
        ImageTransform(224, resize_mode="squash")
    with pytest.raises(InvalidInputError):
        ImageTransform(0)


def test_module_does_not_import_torch():
    """The `lite` model uses this transform and must not need torchvision."""
    modules = set()
    for node in ast.walk(ast.parse(inspect.getsource(preprocess))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    assert not {name.split(".")[0] for name in modules} & {"torch", "torchvision"}
