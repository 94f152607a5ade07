"""load_image on real photos and clip-art, every colour mode, animations, HEIC and broken inputs."""

from __future__ import annotations

import importlib.util
import io
import os
import struct
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xmodal import images
from xmodal.errors import ImageLoadError
from xmodal.images import IMAGE_EXTENSIONS, load_image

OPENCLIPART = Path("/usr/share/openclipart/png")
RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


@pytest.fixture(scope="module")
def photo(photo_by_name) -> Path:
    """A real 451x300 photo of a cat."""
    return photo_by_name["chelsea"].path


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def encoded(image: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **params)
    return buf.getvalue()


def load_error(source, **kwargs) -> ImageLoadError:
    with pytest.raises(ImageLoadError) as info:
        load_image(source, **kwargs)
    return info.value


# -- sources -----------------------------------------------------------------------------------


def test_path_str_bytes_and_pil_image_give_the_same_rgb_pixels(photo):
    expected = np.asarray(Image.open(photo).convert("RGB"))
    for source in (photo, str(photo), photo.read_bytes(), Image.open(photo)):
        image = load_image(source)
        assert image.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(image), expected)


def test_pil_image_is_not_modified():
    original = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    load_image(original)
    assert original.mode == "RGBA"
    assert original.getpixel((0, 0)) == (0, 0, 0, 0)


def test_image_extensions():
    assert {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"} <= IMAGE_EXTENSIONS
    has_heif = importlib.util.find_spec("pillow_heif") is not None
    assert ({".heic", ".heif"} <= IMAGE_EXTENSIONS) == has_heif


# -- transparency and colour modes -------------------------------------------------------------


def _first_clipart_with_transparent_corner() -> Path:
    if not OPENCLIPART.is_dir():
        pytest.skip(f"{OPENCLIPART} missing: install the Debian package openclipart-png")
    for path in sorted(OPENCLIPART.rglob("*.png")):
        with Image.open(path) as image:
            if image.mode == "RGBA" and image.getpixel((0, 0))[3] == 0:
                return path
    pytest.skip("no RGBA clip-art with a transparent corner found")


def test_real_clipart_is_composited_on_white_not_black():
    path = _first_clipart_with_transparent_corner()
    rgba = np.asarray(Image.open(path), dtype=np.float64)
    alpha = rgba[..., 3:] / 255
    expected = rgba[..., :3] * alpha + 255 * (1 - alpha)

    loaded = load_image(path)

    assert loaded.getpixel((0, 0)) == WHITE
    assert np.abs(pixels(loaded) - expected).max() <= 1
    # The drawing itself survives: some pixels are far from white.
    assert (pixels(loaded).sum(axis=2) < 3 * 128).any()


def test_background_colour_is_used_for_transparent_pixels():
    path = _first_clipart_with_transparent_corner()
    assert load_image(path, background=GREEN).getpixel((0, 0)) == GREEN


def test_partial_alpha_blends_with_the_background():
    image = Image.new("RGBA", (2, 1))
    image.putpixel((0, 0), (0, 0, 0, 0))  # fully transparent black
    image.putpixel((1, 0), (255, 0, 0, 128))  # half-transparent red
    loaded = load_image(encoded(image, "PNG"))
    assert loaded.getpixel((0, 0)) == WHITE
    assert loaded.getpixel((1, 0)) == (255, 127, 127)


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_with_transparency(fmt):
    image = Image.new("P", (4, 4), 0)
    image.putpalette([0, 0, 0, *RED] + [0] * 762)
    image.putpixel((3, 3), 1)
    loaded = load_image(encoded(image, fmt, transparency=0))
    assert loaded.getpixel((0, 0)) == WHITE
    assert loaded.getpixel((3, 3)) == RED


def test_grayscale_with_alpha_la_and_pa():
    la = Image.merge("LA", (Image.new("L", (2, 2), 0), Image.new("L", (2, 2), 0)))
    assert load_image(encoded(la, "PNG")).getpixel((0, 0)) == WHITE
    pa = Image.new("PA", (2, 2), (0, 0))
    assert load_image(pa).getpixel((0, 0)) == WHITE


def test_cmyk_jpeg_keeps_the_colours(photo):
    original = Image.open(photo).convert("RGB")
    loaded = load_image(encoded(original.convert("CMYK"), "JPEG", quality=95))
    assert loaded.mode == "RGB"
    assert np.abs(pixels(loaded) - pixels(original)).mean() < 3


def test_16bit_grayscale_png_is_scaled_not_clipped():
    ramp = np.linspace(0, 65535, 256, dtype=np.uint16).reshape(16, 16)
    data = encoded(Image.fromarray(ramp), "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    red = pixels(load_image(data))[..., 0]
    np.testing.assert_allclose(red, ramp / 257, atol=1)
    assert red.min() == 0 and red.max() == 255


def test_float_and_32bit_grayscale():
    unit = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
    loaded = pixels(load_image(encoded(Image.fromarray(unit), "TIFF")))[..., 0]
    np.testing.assert_allclose(loaded, unit * 255, atol=1)
    # No nominal range: stretched to 0..255 rather than clipped.
    wide = Image.fromarray((unit * 1e6 - 5e5).astype(np.int32))
    assert wide.mode == "I"
    loaded = pixels(load_image(wide))[..., 0]
    assert loaded.min() == 0 and loaded.max() == 255


def test_bilevel_and_grayscale():
    bilevel = Image.new("1", (2, 1), 0)
    bilevel.putpixel((1, 0), 1)
    loaded = load_image(encoded(bilevel, "PNG"))
    assert [loaded.getpixel((x, 0)) for x in range(2)] == [(0, 0, 0), WHITE]
    assert load_image(Image.new("L", (1, 1), 77)).getpixel((0, 0)) == (77, 77, 77)


# -- orientation and animation -----------------------------------------------------------------


def test_exif_orientation_is_applied(photo):
    stored = Image.open(photo).convert("RGB")
    stored.paste(RED, (0, 0, 40, 40))  # mark the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    loaded = load_image(encoded(stored, "JPEG", quality=95, exif=exif))

    width, height = stored.size
    assert loaded.size == (height, width)
    # Rotated clockwise, the stored top-left corner lands top-right.
    r, g, b = loaded.getpixel((height - 10, 10))
    assert r > 200 and g < 60 and b < 60
    assert loaded.getpixel((10, 10)) != loaded.getpixel((height - 10, 10))


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])
def test_animation_gives_the_first_frame(fmt):
    frames = [Image.new("RGB", (8, 8), colour) for colour in (RED, GREEN, BLUE)]
    data = encoded(frames[0], fmt, save_all=True, append_images=frames[1:], lossless=True)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    assert load_image(data).getpixel((4, 4)) == RED


# -- HEIC --------------------------------------------------------------------------------------


def test_heic_round_trip():
    pillow_heif = pytest.importorskip("pillow_heif")
    buf = io.BytesIO()
    pillow_heif.from_pillow(Image.new("RGB", (64, 48), (200, 30, 40))).save(buf, quality=95)
    loaded = load_image(buf.getvalue())
    assert loaded.size == (64, 48)
    assert np.abs(pixels(loaded)[24, 32] - (200, 30, 40)).max() <= 6


def test_heic_without_pillow_heif_names_the_extra(tmp_path, monkeypatch):
    path = tmp_path / "photo.heic"
    path.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64)
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # import now raises ImportError
    monkeypatch.setattr(Image, "ID", [fmt for fmt in Image.ID if fmt != "HEIF"])
    images._register_heif.cache_clear()
    try:
        error = load_error(path)
    finally:
        images._register_heif.cache_clear()
    assert "pip install 'xmodal[heif]'" in error.reason


# -- failures ----------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "nope.jpg"
    error = load_error(path)
    assert error.source == str(path)
    assert "not found" in error.reason


def test_directory(tmp_path):
    assert "directory" in load_error(tmp_path).reason


def test_empty_file_and_empty_bytes(tmp_path):
    path = tmp_path / "empty.png"
    path.touch()
    assert "empty" in load_error(path).reason
    error = load_error(b"")
    assert error.source == "<bytes>"
    assert "empty" in error.reason


def test_text_file_with_an_image_extension(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("shopping list: eggs, milk\n")
    assert "not an image" in load_error(path).reason


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "TIFF", "HEIF"])
def test_truncated_file_fails_at_load_time(photo, tmp_path, fmt):
    if fmt == "HEIF":
        pytest.importorskip("pillow_heif").register_heif_opener()
    data = encoded(Image.open(photo).convert("RGB"), fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nor may Pillow's chatter ("Corrupt EXIF data") escape
        error = load_error(path)
    assert "truncated" in error.reason
    assert "\n" not in error.reason  # libheif's messages span lines


def test_unreadable_file(photo, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their permissions")
    path = tmp_path / "secret.png"
    path.write_bytes(photo.read_bytes())
    path.chmod(0)
    assert "permission denied" in load_error(path).reason


def test_unsupported_source_type():
    error = load_error(42)
    assert "path, bytes or a PIL image" in error.reason


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height 1-bit pixels but carries no pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_from_the_header(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(30000, 30000))
    limit_before = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning must not escape
        error = load_error(path)
    assert error.reason == (
        "image is 30000x30000 pixels, over the limit of 100000000 (XMODAL_MAX_IMAGE_PIXELS)"
    )
    assert limit_before == Image.MAX_IMAGE_PIXELS


def test_pixel_limit_from_argument_and_environment(photo, monkeypatch):
    assert "over the limit of 1000" in load_error(photo, max_pixels=1000).reason
    monkeypatch.setenv("XMODAL_MAX_IMAGE_PIXELS", "1000")
    assert "451x300" in load_error(photo).reason
    assert load_image(photo, max_pixels=451 * 300).size == (451, 300)


def test_our_limit_governs_not_pillows_global(photo, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # photo is over twice this
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_image(photo).size == (451, 300)
    assert Image.MAX_IMAGE_PIXELS == 1000


# -- formats outside the allowlist ----------------------------------------------------------

EPS = b"""%!PS-Adobe-3.0 EPSF-3.0
%%BoundingBox: 0 0 16 16
newpath 0 0 moveto 16 16 lineto stroke
showpage
%%EOF
"""
_LOAD_IN_CHILD = """
import sys
from xmodal.errors import ImageLoadError
from xmodal.images import load_image
try:
    load_image(sys.argv[1])
    print("decoded")
except ImageLoadError as e:
    print("refused:", e.reason)
"""


def _load_with_watched_ghostscript(tmp_path: Path, path: Path, formats: str | None):
    """Load `path` in a fresh process whose PATH starts with a `gs` that leaves a mark when run
    (then hands over to the real one, if any): whether Ghostscript was started is then a fact
    on disk, not a guess."""
    import shutil
    import subprocess

    bin_dir, mark = tmp_path / "bin", tmp_path / "ghostscript-ran"
    bin_dir.mkdir(exist_ok=True)
    real = shutil.which("gs")
    gs = bin_dir / "gs"
    gs.write_text(
        f'#!/bin/sh\ntouch "{mark}"\n' + (f'exec "{real}" "$@"\n' if real else "exit 1\n")
    )
    gs.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("XMODAL_IMAGE_FORMATS", None)
    if formats is not None:
        env["XMODAL_IMAGE_FORMATS"] = formats
    done = subprocess.run(
        [sys.executable, "-c", _LOAD_IN_CHILD, str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip(), mark.exists()


@pytest.mark.parametrize("name", ["drawing.eps", "renamed.jpg"])
def test_eps_never_starts_ghostscript(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(EPS)
    out, ran = _load_with_watched_ghostscript(tmp_path, path, None)
    assert out.startswith("refused: EPS files are not decoded")
    assert "XMODAL_IMAGE_FORMATS" in out
    assert not ran


def test_the_ghostscript_watch_sees_a_decode_when_eps_is_allowed(tmp_path):
    # The same watch with EPS allowed on purpose: proves the test above can fail.
    path = tmp_path / "drawing.eps"
    path.write_bytes(EPS)
    _, ran = _load_with_watched_ghostscript(tmp_path, path, "EPS,PNG")
    assert ran


def test_allowlist_from_the_environment(photo, monkeypatch, tmp_path):
    png = tmp_path / "cat.png"
    png.write_bytes(encoded(Image.open(photo).convert("RGB"), "PNG"))
    jpeg = encoded(Image.open(photo).convert("RGB"), "JPEG")
    monkeypatch.setenv("XMODAL_IMAGE_FORMATS", "jpeg")
    assert load_image(jpeg).size == (451, 300)
    assert "PNG files are not decoded" in load_error(png).reason
    monkeypatch.delenv("XMODAL_IMAGE_FORMATS")
    assert load_image(png).size == (451, 300)


@pytest.mark.parametrize("fmt", ["ICO", "PPM", "TGA", "PCX"])
def test_other_pillow_formats_are_refused_by_default(photo, fmt):
    data = encoded(Image.open(photo).convert("RGB").resize((32, 32)), fmt)
    reason = load_error(data).reason
    assert "not decoded" in reason or "not an image" in reason


def test_multi_picture_jpeg_counts_as_jpeg(photo):
    frames = [Image.open(photo).convert("RGB"), Image.open(photo).convert("L").convert("RGB")]
    data = encoded(frames[0], "MPO", save_all=True, append_images=frames[1:])
    assert Image.open(io.BytesIO(data)).format == "MPO"
    assert load_image(data).size == (451, 300)
