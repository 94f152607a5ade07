"""Image loading in one place: any path, upload or PIL image -> an RGB PIL image, or ImageLoadError.

Every reader of images in xmodal goes through `load_image`, so EXIF orientation, transparency,
odd colour modes, animations, HEIC and decompression bombs are handled the same way everywhere.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import os
import struct
import subprocess
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

import numpy as np
from PIL import Image, ImageFile, ImageOps, features

from xmodal.config import get_settings
from xmodal.errors import ImageLoadError, ImageTooLargeError, InvalidInputError

ImageSource = str | os.PathLike | bytes | Image.Image

_HEIF_EXTENSIONS = frozenset({".heic", ".heif"})
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
    | (_HEIF_EXTENSIONS if importlib.util.find_spec("pillow_heif") else set())
    # AVIF is read by Pillow itself when built with libavif; pillow-heif >= 1.0 dropped it.
    | ({".avif"} if features.check_module("avif") else set())
)

_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_DEEP_GRAY_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
# Header parsing errors that mean "not this format", as Image.open treats them.
_NOT_THIS_FORMAT = (SyntaxError, IndexError, TypeError, struct.error)
# What decoders raise on truncated or corrupt data (SubprocessError: an external decoder, e.g.
# Ghostscript for an allowed EPS, that is broken or exits with an error).
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    struct.error,
    subprocess.SubprocessError,
)
_HEIF_MISSING = "HEIC/HEIF image, but pillow-heif is not installed: pip install 'xmodal[heif]'"
# Formats whose decoder can scale down while decoding (libjpeg's DCT scaling: 1/2, 1/4, 1/8).
_DRAFT_FORMATS = frozenset({"JPEG", "MPO"})
# EXIF orientations that turn the image a quarter turn, swapping width and height.
_QUARTER_TURNS = frozenset({5, 6, 7, 8})
_ORIENTATION = 0x0112


@dataclass(frozen=True)
class DecodedImage:
    """An upright RGB image and the upright size of the file's full image, which is larger
    than `image` when the decoder scaled it down (`min_side`)."""

    image: Image.Image
    width: int
    height: int


def load_image(
    source: ImageSource,
    *,
    background: tuple[int, int, int] = (255, 255, 255),
    max_pixels: int | None = None,
    min_side: int | None = None,
) -> Image.Image:
    """Decode `source` into a new RGB image, upright, transparency composited on `background`.

    source: a path, the bytes of an image file (an upload), or a PIL image (not modified).
    max_pixels: refuse larger images, checked from the header before decoding; defaults to
    `get_settings().max_image_pixels` (XMODAL_MAX_IMAGE_PIXELS).
    min_side: decode a JPEG file at the smallest scale (1/2, 1/4 or 1/8, done inside the
    decoder: about 5x faster than a full decode for a baseline JPEG, 2x for a progressive one)
    that keeps both sides at least this long; other formats, PIL images and None decode in full.
    Raises ImageLoadError naming the source and the reason for anything that is not a readable
    image.
    """
    return decode_image(
        source, background=background, max_pixels=max_pixels, min_side=min_side
    ).image


def decode_image(
    source: ImageSource,
    *,
    background: tuple[int, int, int] = (255, 255, 255),
    max_pixels: int | None = None,
    min_side: int | None = None,
) -> DecodedImage:
    """`load_image`, with the full upright size as well (what a catalog stores)."""
    if min_side is not None and min_side < 1:
        raise InvalidInputError(f"min_side must be at least 1, got {min_side}")
    limit = get_settings().max_image_pixels if max_pixels is None else max_pixels
    if isinstance(source, Image.Image):
        return _finish("<image>", source, limit, background, None)
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise ImageLoadError("<bytes>", "empty data (0 bytes)")
        return _load_stream("<bytes>", io.BytesIO(source), "", limit, background, min_side)
    if isinstance(source, (str, os.PathLike)):
        return _load_path(os.fspath(source), limit, background, min_side)
    raise ImageLoadError(
        f"<{type(source).__name__}>",
        f"cannot load an image from a {type(source).__name__}: give a path, bytes or a PIL image",
    )


def _load_path(
    path: str, limit: int, background: tuple[int, int, int], min_side: int | None
) -> DecodedImage:
    if os.path.isdir(path):
        raise ImageLoadError(path, "is a directory, not an image file")
    try:
        with open(path, "rb") as fp:
            if os.fstat(fp.fileno()).st_size == 0:
                raise ImageLoadError(path, "empty file (0 bytes)")
            suffix = os.path.splitext(path)[1].lower()
            return _load_stream(path, fp, suffix, limit, background, min_side)
    except FileNotFoundError:
        raise ImageLoadError(path, "file not found") from None
    except PermissionError:
        raise ImageLoadError(path, "permission denied") from None
    except OSError as e:
        raise ImageLoadError(path, f"cannot read file: {e.strerror or _one_line(e)}") from None


def _load_stream(
    name: str,
    fp: IO[bytes],
    suffix: str,
    limit: int,
    background: tuple[int, int, int],
    min_side: int | None,
) -> DecodedImage:
    header = fp.read(16)
    # HEIC/HEIF (and AVIF) are ISO media files: a "ftyp" box right at the start.
    looks_heif = suffix in _HEIF_EXTENSIONS or header[4:8] == b"ftyp"
    heif_ready = looks_heif and _register_heif()
    try:
        with _quiet_pillow(name):
            image = identify(fp, header)
    except _DECODE_ERRORS as e:
        raise ImageLoadError(name, f"corrupt image header: {_one_line(e)}") from None
    if image is None:
        if looks_heif and not heif_ready:
            raise ImageLoadError(name, _HEIF_MISSING)
        refused = _refused_format(header)
        if refused is not None:
            allowed = ", ".join(sorted(allowed_formats()))
            raise ImageLoadError(
                name,
                f"{refused} files are not decoded (allowed formats: {allowed}; "
                "XMODAL_IMAGE_FORMATS changes the list)",
            )
        raise ImageLoadError(name, "not an image, or an unsupported image format")
    return _finish(name, image, limit, background, min_side)


def identify(fp: IO[bytes], header: bytes) -> ImageFile.ImageFile | None:
    """Image.open limited to the allowed formats and without its built-in bomb check, or None
    when no allowed format accepts the data.

    Only allowlisted raster formats are tried: Pillow's other plugins include EPS, whose
    decoder runs a Ghostscript subprocess on whatever the file says (also when it is renamed
    .jpg), and rarely used formats with little-tested parsers.
    Image.open compares against the process-wide Image.MAX_IMAGE_PIXELS and raises on images
    over twice that before we learn their size; our own limit is applied from the header instead,
    and the global is left alone for other users of Pillow in the process.
    """
    Image.init()
    allowed = allowed_formats()
    for fmt in Image.ID:
        if fmt not in allowed:
            continue
        factory, accept = Image.OPEN[fmt]
        if accept is not None and accept(header) is not True:
            continue
        fp.seek(0)
        try:
            return factory(fp, "")
        except _NOT_THIS_FORMAT:
            continue
    return None


def allowed_formats() -> frozenset[str]:
    """Pillow format names decoded at all (XMODAL_IMAGE_FORMATS; JPEG includes MPO, the
    multi-picture JPEG many cameras write)."""
    names = {f.upper() for f in get_settings().image_formats}
    if "JPEG" in names:
        names.add("MPO")
    return frozenset(names)


def _refused_format(header: bytes) -> str | None:
    """The name of a known but not allowed format that claims `header` (checked by signature
    only: nothing is parsed or run)."""
    allowed = allowed_formats()
    return next((f for f in Image.ID if f not in allowed and claims(f, header)), None)


def claims(fmt: str, header: bytes) -> bool:
    """Whether Pillow's plugin for `fmt` recognises `header` by its signature (some checks
    raise on a header shorter than they read: that is a no)."""
    Image.init()
    accept = Image.OPEN[fmt][1]
    try:
        return accept is not None and accept(header) is True
    except _NOT_THIS_FORMAT:
        return False


def _finish(
    name: str,
    image: Image.Image,
    limit: int,
    background: tuple[int, int, int],
    min_side: int | None,
) -> DecodedImage:
    width, height = image.size
    if width * height > limit:
        raise ImageTooLargeError(
            name,
            f"image is {width}x{height} pixels, over the limit of {limit} "
            "(XMODAL_MAX_IMAGE_PIXELS)",
        )
    try:
        with _quiet_pillow(name):
            if min_side is not None and image.format in _DRAFT_FORMATS:
                # A square request: both sides stay >= min_side whichever way EXIF turns it.
                image.draft("RGB", (min_side, min_side))
            if image.getexif().get(_ORIENTATION) in _QUARTER_TURNS:
                width, height = height, width
            image.load()  # decode now, so truncated files fail here and not in a model
            upright = ImageOps.exif_transpose(image)
    except _DECODE_ERRORS as e:
        raise ImageLoadError(name, f"truncated or corrupt image data: {_one_line(e)}") from None
    try:
        return DecodedImage(_to_rgb(upright, background), width, height)
    except (ValueError, OSError) as e:
        raise ImageLoadError(
            name, f"cannot convert {image.mode} image to RGB: {_one_line(e)}"
        ) from None


@contextlib.contextmanager
def _quiet_pillow(name: str) -> Iterator[None]:
    """Silence Pillow's warnings while it reads: an image either loads or becomes an
    ImageLoadError, and callers indexing thousands of files do not want "Corrupt EXIF data".

    Pillow's own bomb checks (some plugins repeat them while decoding) read the process-wide
    Image.MAX_IMAGE_PIXELS; ours has already been applied, so an error from theirs is reported
    as too many pixels too.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            warnings.filterwarnings("ignore", module=r"PIL\.")
            yield
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(name, f"too many pixels: {_one_line(e)}") from None


def _one_line(error: BaseException) -> str:
    # Decoder messages (libheif's especially) can span lines; a reason is one line.
    return " ".join(str(error).split())


def _to_rgb(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    if image.mode in _DEEP_GRAY_MODES:
        image = _to_8bit(image)  # drops a 16-bit tRNS key colour: rare enough to ignore
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        # A bare alpha drop leaves whatever colour hides under transparent pixels (often black).
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def _to_8bit(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit and float grayscale -> "L"; Pillow's own convert clips them at 255 (white)."""
    pixels = np.asarray(image, dtype=np.float64)
    low, high = float(pixels.min()), float(pixels.max())
    if image.mode == "F" and low >= 0.0 and high <= 1.0:
        scaled = pixels * 255.0  # float images usually mean [0, 1]
    elif image.mode != "F" and low >= 0 and high <= 65535:
        scaled = pixels / 257.0  # 16-bit range, whatever container it came in
    else:
        # No nominal range to keep: stretch what is there (a constant image becomes black).
        scaled = (pixels - low) * (255.0 / (high - low)) if high > low else pixels * 0.0
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


@functools.cache
def _register_heif() -> bool:
    """Teach Pillow HEIC/HEIF on first need; False when pillow-heif is not installed."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True
