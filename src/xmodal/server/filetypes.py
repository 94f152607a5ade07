"""What kind of image, sound or video a file really is, from its first bytes, never its name.

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


# -- sounds and videos -------------------------------------------------------------------------


@dataclass(frozen=True)
class MediaKind:
    format: str  # a short name for messages: WAV, FLAC, Ogg, MP3, MP4, WebM, ...
    extension: str  # with the dot
    media_type: str  # what a browser's <audio>/<video> is told it plays
    video: bool  # a container that usually holds pictures (an MP4, a WebM, an AVI)


_WAV = MediaKind("WAV", ".wav", "audio/wav", False)
_MP3 = MediaKind("MP3", ".mp3", "audio/mpeg", False)
_AAC = MediaKind("AAC", ".aac", "audio/aac", False)
_M4A = MediaKind("M4A", ".m4a", "audio/mp4", False)
_MP4 = MediaKind("MP4", ".mp4", "video/mp4", True)
_MOV = MediaKind("QuickTime", ".mov", "video/quicktime", True)
# ISO media brands that are sound only; every other brand (isom, mp42, avc1, ...) is a video
# container, except the image brands of _BRANDS.
_AUDIO_BRANDS = {b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B "}
_ASF = b"\x30\x26\xb2\x75\x8e\x66\xcf\x11\xa6\xd9\x00\xaa\x00\x62\xce\x6c"
_EBML = b"\x1a\x45\xdf\xa3"


def sniff_media(header: bytes) -> MediaKind | None:
    """The sound or video container whose signature `header` (the first HEADER_BYTES) carries,
    or None. Signatures only: whether the data inside decodes is load_audio's business."""
    if header[:4] == b"RIFF" and header[8:12] == b"WAVE":
        return _WAV
    if header[:4] == b"RIFF" and header[8:12] == b"AVI ":
        return MediaKind("AVI", ".avi", "video/x-msvideo", True)
    if header[:4] == b"fLaC":
        return MediaKind("FLAC", ".flac", "audio/flac", False)
    if header[:4] == b"OggS":
        return MediaKind("Ogg", ".ogg", "audio/ogg", False)
    if header[:4] == b"FORM" and header[8:12] in (b"AIFF", b"AIFC"):
        return MediaKind("AIFF", ".aiff", "audio/aiff", False)
    if header[:3] == b"ID3":
        return _MP3
    if len(header) >= 2 and header[0] == 0xFF and header[1] & 0xE0 == 0xE0:
        # An MPEG audio frame sync: layer bits 00 are AAC's ADTS, the others MP3 (layers I-III).
        return _AAC if header[1] & 0x06 == 0 else _MP3
    if header[4:8] == b"ftyp" and header[8:12] not in _BRANDS:
        brand = header[8:12]
        return _M4A if brand in _AUDIO_BRANDS else _MOV if brand == b"qt  " else _MP4
    if header[:4] == _EBML:
        # Matroska and WebM differ by the DocType element near the start.
        if b"webm" in header:
            return MediaKind("WebM", ".webm", "video/webm", True)
        return MediaKind("Matroska", ".mkv", "video/x-matroska", True)
    if header[:16] == _ASF:
        return MediaKind("ASF", ".wma", "audio/x-ms-wma", False)
    return None


def describe(header: bytes) -> str:
    """Why `header` is not a sound, for a message refusing it ("x.wav " + this)."""
    image = sniff(header)
    if image is not None:
        return f"is a {image.format} image, not a sound"
    if header[:5].lower() in (b"<!doc", b"<html") or header[:5] == b"<?xml":
        return "is an HTML or XML document, not a sound"
    return "does not start like a sound or video file"
