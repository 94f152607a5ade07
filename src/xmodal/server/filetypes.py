"""What kind of image a stored file really is, from its first bytes, never from its name.

Uploads are named and files are served by this answer, so a GIF/HTML polyglot called `x.html`
is stored as `.gif` and served as `image/gif`: the client's name and extension are never trusted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO

from PIL import Image

from xmodal.images import allowed_formats, claims

HEADER_BYTES = 64  # enough for every signature Pillow's allowed plugins check


@dataclass(frozen=True)
class ImageKind:
    format: str  # Pillow's format name: JPEG, PNG, ...
    extension: str  # with the dot: .jpg
    media_type: str  # image/jpeg


# Pillow format -> (extension, media type); other allowed formats fall back to Pillow's tables.
_KNOWN = {
    "JPEG": (".jpg", "image/jpeg"),
    "MPO": (".jpg", "image/jpeg"),  # a multi-picture JPEG: browsers show its first picture
    "PNG": (".png", "image/png"),
    "WEBP": (".webp", "image/webp"),
    "GIF": (".gif", "image/gif"),
    "BMP": (".bmp", "image/bmp"),
    "TIFF": (".tif", "image/tiff"),
    "HEIF": (".heic", "image/heic"),
    "AVIF": (".avif", "image/avif"),
}
# ISO media files (HEIF, AVIF) name their kind in the "ftyp" box; pillow-heif registers its
# plugin lazily, so these are recognised without it.
_BRANDS = {
    b"heic": "HEIF",
    b"heix": "HEIF",
    b"heim": "HEIF",
    b"heis": "HEIF",
    b"hevc": "HEIF",
    b"hevx": "HEIF",
    b"mif1": "HEIF",
    b"msf1": "HEIF",
    b"avif": "AVIF",
    b"avis": "AVIF",
}


def sniff(header: bytes) -> ImageKind | None:
    """The allowed image kind whose signature `header` carries, or None (not an allowed image).

    Only signatures are compared (Pillow's plugin checks): nothing is parsed or decoded."""
    allowed = allowed_formats()
    fmt = _BRANDS.get(header[8:12]) if header[4:8] == b"ftyp" else None
    if fmt is None:
        Image.init()
        fmt = next((name for name in Image.ID if name in allowed and claims(name, header)), None)
    if fmt is None or fmt not in allowed:
        return None
    extension, media_type = _KNOWN.get(fmt) or _pillow_names(fmt)
    return ImageKind(fmt, extension, media_type) if media_type else None


def sniff_file(fp: IO[bytes]) -> ImageKind | None:
    return sniff(fp.read(HEADER_BYTES))


def _pillow_names(fmt: str) -> tuple[str, str | None]:
    extensions = [ext for ext, name in Image.registered_extensions().items() if name == fmt]
    return (extensions[0] if extensions else ".img"), Image.MIME.get(fmt)
