"""Reduced-size JPEG decoding: large real photos decode at 1/2..1/8 scale for the model and for
thumbnails, upright, with vectors within cosine 0.99 of a full decode; the catalog keeps the
full size and other formats decode as before."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from live_server import live_server
from xmodal.engine.collection import Collection
from xmodal.errors import InvalidInputError
from xmodal.images import decode_image, load_image
from xmodal.models.preprocess import ImageTransform
from xmodal.server import ServerSettings, create_app

LONG_SIDE = 2000
ROTATED = "chelsea"  # stored on its side, with EXIF orientation 6 (turn 90 degrees clockwise)


def _upscaled(path) -> Image.Image:
    image = Image.open(path).convert("RGB")
    ratio = LONG_SIDE / max(image.size)
    return image.resize((round(image.width * ratio), round(image.height * ratio)), Image.BICUBIC)


@pytest.fixture(scope="module")
def large_jpegs(tmp_path_factory, photos):
    """The sample photos upscaled to a 2000-pixel long side as JPEG files, with their upright
    images; one is stored turned on its side and tagged with EXIF orientation 6."""
    folder = tmp_path_factory.mktemp("large-jpegs")
    out = {}
    for photo in photos:
        upright = _upscaled(photo.path)
        path = folder / f"{photo.name}.jpg"
        if photo.name == ROTATED:
            exif = Image.Exif()
            exif[0x0112] = 6
            # Orientation 6 shows the stored pixels turned 90 degrees clockwise.
            upright.transpose(Image.Transpose.ROTATE_90).save(path, quality=90, exif=exif)
        else:
            upright.save(path, quality=90)
        out[photo.name] = (path, upright)
    return out


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1)


def test_vectors_stay_within_cosine_099_of_full_decoding(lite, large_jpegs):
    paths = [path for path, _ in large_jpegs.values()]
    full = lite.embed_prepared([lite.prepare_image(load_image(p)) for p in paths])
    reduced = lite.embed_images(paths)
    cosines = _cosines(full, reduced)
    assert cosines.min() >= 0.99, dict(zip(large_jpegs, cosines.round(4)))
    # Not vacuous: the model's images really were decoded small.
    assert lite.decode_size == 224
    assert all(max(load_image(p, min_side=224).size) < LONG_SIDE for p in paths)


def test_reduced_decode_is_upright_big_enough_and_knows_the_full_size(large_jpegs):
    path, upright = large_jpegs[ROTATED]
    decoded = decode_image(path, min_side=224)
    assert (decoded.width, decoded.height) == upright.size  # the full upright size
    small = decoded.image
    assert small.mode == "RGB" and min(small.size) >= 224
    assert small.width < upright.width
    # Same picture the same way up: compared at the small size, pixels differ only a little.
    # (Turned the wrong way, the aspect ratio alone would differ.)
    assert small.width / small.height == pytest.approx(upright.width / upright.height, rel=0.01)
    expected = np.asarray(upright.resize(small.size, Image.BICUBIC), dtype=np.float32)
    assert np.abs(np.asarray(small, dtype=np.float32) - expected).mean() < 6


@pytest.mark.parametrize("min_side", [1, 224, 700, 1500, 5000])
def test_the_smallest_scale_that_keeps_both_sides_long_enough(large_jpegs, min_side):
    path, upright = large_jpegs["astronaut"]  # 2000 x 2000
    assert upright.size == (LONG_SIDE, LONG_SIDE)
    side = load_image(path, min_side=min_side).width
    scale = {1: 8, 224: 8, 700: 2, 1500: 1, 5000: 1}[min_side]
    assert side == LONG_SIDE // scale


def test_a_non_jpeg_decodes_in_full(tmp_path, large_jpegs):
    _, upright = large_jpegs["coffee"]
    png = tmp_path / "coffee.png"
    upright.save(png)
    decoded = decode_image(png, min_side=224)
    assert (decoded.width, decoded.height) == decoded.image.size == upright.size
    assert np.array_equal(np.asarray(decoded.image), np.asarray(load_image(png)))


def test_a_pil_image_is_never_scaled(large_jpegs):
    path, _ = large_jpegs["rocket"]
    opened = Image.open(path)
    assert load_image(opened, min_side=224).size == opened.size


def test_min_side_must_be_positive(large_jpegs):
    path, _ = large_jpegs["rocket"]
    with pytest.raises(InvalidInputError, match="min_side"):
        load_image(path, min_side=0)


def test_full_decode_transform_asks_for_the_full_image():
    assert ImageTransform(224).decode_size == 224
    assert ImageTransform(224, full_decode=True).decode_size is None


def test_index_stores_full_sizes_and_near_full_decode_vectors(tmp_path, lite, large_jpegs):
    root = tmp_path / "photos"
    root.mkdir()
    for name in ("chelsea", "rocket", "coffee"):
        path, _ = large_jpegs[name]
        (root / path.name).write_bytes(path.read_bytes())
    with Collection.open(tmp_path / "db", lite) as collection:
        report = collection.index([root])
        assert report.embedded == 3
        hits = collection.search_text("a photo", k=10)
        assert len(hits) == 3
        for hit in hits:
            item = collection.get(hit.id)
            _, upright = large_jpegs[Path(item.path).stem]
            assert (item.width, item.height) == upright.size
            full = lite.embed_prepared([lite.prepare_image(load_image(item.path))])[0]
            assert float(full @ collection.vector(hit.id)) >= 0.99


def test_thumbnail_of_a_large_rotated_jpeg(tmp_path, lite, large_jpegs):
    root = tmp_path / "photos"
    root.mkdir()
    path, upright = large_jpegs[ROTATED]
    (root / path.name).write_bytes(path.read_bytes())
    with Collection.open(tmp_path / "db", lite) as collection:
        collection.index([root])
    app = create_app(ServerSettings(db=tmp_path / "db"), encoder=lite)
    with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        (hit,) = client.get("/search", params={"q": "a cat", "k": 5}).json()["results"]
        info = client.get(f"/items/{hit['id']}").json()
        assert (info["width"], info["height"]) == upright.size
        r = client.get(f"/items/{hit['id']}/thumbnail", params={"size": 128})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    thumb = Image.open(io.BytesIO(r.content)).convert("RGB")
    # Upright: wider than tall, long side 128 (the short side may round a pixel either way,
    # from the padded edge blocks of the scaled decode).
    assert thumb.width == 128 and abs(thumb.height - 128 * upright.height / upright.width) <= 1
    expected = upright.resize(thumb.size, Image.LANCZOS)
    diff = np.abs(np.asarray(thumb, np.float32) - np.asarray(expected, np.float32)).mean()
    assert diff < 8
