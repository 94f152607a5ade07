"""Titles, descriptions and keywords stored inside image files (EXIF, XMP, IPTC, PNG text chunks),
read from the bytes without decoding a pixel, and never raising on hostile bytes."""

from __future__ import annotations

_EMBEDDED_CAP = 8 * 1024  # bytes of embedded text kept


def join_parts(parts, cap: int) -> str:
    """Distinct parts (case and spacing aside) joined as sentences, at most `cap` bytes."""
    seen, out, size = set(), [], 0
    for part in parts:
        part = " ".join(part.replace("\x00", " ").split())
        key = part.casefold()
        if key in seen or not any(ch.isalnum() for ch in part):
            continue
        seen.add(key)
        if out:
            part = (" " if out[-1][-1] in ".!?।…" else ". ") + part
        out.append(part)
        size += len(part.encode())
        if size >= cap:
            break
    return cap_utf8("".join(out), cap)


def cap_utf8(text: str, limit: int) -> str:
    if len(text) * 4 <= limit:
        return text
    return text.encode()[:limit].decode("utf-8", "ignore")


# -- descriptions embedded in image files -------------------------------------------------------

# Strings cameras and programs write into description fields by default.
_BOILERPLATE = frozenset(
    {
        "olympus digital camera",
        "sony dsc",
        "default",
        "digital camera",
        "konica minolta digital camera",
        "minolta digital camera",
        "samsung",
        "samsung csc",
        "exif_jpeg_picture",
        "lead technologies inc. v1.01",
        "created with gimp",
        "dcim",
        "picasa",
        "untitled",
        "image",
        "no description",
        "x-default",  # an XMP language tag written as the value (seen from Capture One)
    }
)  # compared case-folded
# XPTitle, XPSubject, XPComment, XPKeywords (0x9C9D, XPAuthor, names no content)
_EXIF_XP_TAGS = (0x9C9B, 0x9C9F, 0x9C9C, 0x9C9E)
_PNG_TEXT_KEYS = frozenset({"title", "description", "comment", "subject", "keywords"})
_IPTC_DATASETS = ((2, 105), (2, 5), (2, 120), (2, 25))  # headline, object name, caption, keywords
_XMP_CAP = 1024 * 1024  # bytes of one XMP packet parsed at most
_VALUE_CAP = 8 * 1024  # characters kept of one value

_DC = "{http://purl.org/dc/elements/1.1/}"
_XMP_FIELDS = frozenset(
    {_DC + "title", _DC + "description", _DC + "subject"}
    | {"{http://ns.adobe.com/photoshop/1.0/}Headline"}
    | {
        "{http://ns.adobe.com/tiff/1.0/}ImageDescription",
        "{http://ns.adobe.com/exif/1.0/}UserComment",
    }
    | {
        "{http://iptc.org/std/Iptc4xmpCore/1.0/xmlns/}" + n
        for n in ("AltTextAccessibility", "ExtDescrAccessibility")
    }
    | {"{http://iptc.org/std/Iptc4xmpExt/2008-02-29/}" + n for n in ("PersonInImage", "Event")}
    | {"{http://www.metadataworkinggroup.com/schemas/regions/}Name"}  # people tagged in regions
)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_RDF_LI = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}li"


def embedded_text(data: bytes) -> str:
    """Titles, descriptions and keywords stored inside an image file (EXIF, XMP, IPTC, PNG text),
    read without decoding pixels; '' for a file with none, or for bytes that are no image."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Corrupt EXIF data" and the like, thousands of times
        parts = _safely(_png_parts if data.startswith(_PNG_SIGNATURE) else _pillow_parts, data)
    kept = (p for p in parts if p.strip(" \t\r\n\x00").casefold() not in _BOILERPLATE)
    return join_parts(kept, _EMBEDDED_CAP)


def _safely(read, *args) -> list[str]:
    """What one metadata reader finds, or nothing: a parser's surprise on hostile bytes must
    neither stop an indexing run nor lose what the other blocks of the file say."""
    try:
        return read(*args)
    except Exception:
        return []


def _pillow_parts(data: bytes) -> list[str]:
    import io

    from PIL import IptcImagePlugin

    image = _open_lazily(io.BytesIO(data))
    if image is None:
        return []
    with image:
        parts = _safely(lambda: _exif_parts(image.getexif()))
        xmp = image.info.get("xmp") or image.info.get("XML:com.adobe.xmp")
        if xmp is None and hasattr(image, "tag_v2"):
            xmp = image.tag_v2.get(700)  # TIFF's XMP tag
        parts += _safely(_xmp_parts, xmp if xmp is not None else _find_xmp(data))
        if image.format in ("JPEG", "MPO", "TIFF"):
            parts += _safely(lambda: _iptc_parts(IptcImagePlugin.getiptcinfo(image) or {}))
    return parts


def _open_lazily(fp):
    """The image's header parsed by the first allowed format that takes it (None if none), with
    no pixel-count check: no pixel is decoded here."""
    from xmodal.images import identify

    return identify(fp, fp.read(16))


def _exif_parts(exif) -> list[str]:
    parts = [_exif_value(exif.get(0x010E), "utf-8")]
    for tag in _EXIF_XP_TAGS:
        value = _exif_value(exif.get(tag), "utf-16-le")
        parts += value.split(";") if tag == 0x9C9E else [value]  # XPKeywords: "beach;sunset"
    comment = exif.get_ifd(0x8769).get(0x9286)
    if isinstance(comment, bytes):
        parts.append(_user_comment(comment))
    return parts


def _exif_value(value, encoding: str) -> str:
    if isinstance(value, tuple):  # BYTE values, as some writers type the XP* tags
        value = bytes(v for v in value if isinstance(v, int) and 0 <= v < 256)
    if isinstance(value, bytes):  # XP* tags are UTF-16LE (NUL-terminated)
        return value[: 2 * _VALUE_CAP].decode(encoding, "replace")
    if isinstance(value, str):
        return _undo_latin1(value[:_VALUE_CAP])
    return ""


def _undo_latin1(text: str) -> str:
    """Pillow decodes EXIF ASCII fields as Latin-1; most tools write UTF-8 there."""
    try:
        return text.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return text


def _user_comment(raw: bytes) -> str:
    """EXIF UserComment: an 8-byte character-code prefix, then the text."""
    code, body = raw[:8].rstrip(b"\x00 "), raw[8 : 8 + 2 * _VALUE_CAP]
    if code == b"UNICODE":
        # The spec says the file's byte order; writers disagree, so look at where the NULs are.
        little = body[1::2].count(0) >= body[0::2].count(0)
        return body.decode("utf-16-le" if little else "utf-16-be", "replace")
    if code == b"JIS":
        for encoding in ("iso2022_jp", "shift_jis"):
            try:
                return body.decode(encoding)
            except UnicodeError:
                continue
        return ""
    return _bytes_text(body if code in (b"ASCII", b"") else raw)


def _bytes_text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", "replace")


def _find_xmp(data: bytes) -> bytes | None:
    """An XMP packet anywhere in the file's bytes (formats whose reader does not expose it)."""
    start = data.find(b"<x:xmpmeta")
    end = data.find(b"</x:xmpmeta>", start)
    if start < 0 or end < 0:
        return None
    return data[start : end + len(b"</x:xmpmeta>")]


def _xmp_parts(packet) -> list[str]:
    import xml.etree.ElementTree as ET

    if not isinstance(packet, (bytes, str)):
        return []
    if isinstance(packet, bytes):
        packet = _decode_xmp(packet[:_XMP_CAP])
    packet = packet[:_XMP_CAP].strip("\x00 \t\r\n\ufeff")
    # Entities could expand a few bytes into gigabytes (and XMP never needs a DTD).
    if "<!ENTITY" in packet.upper() or "<!DOCTYPE" in packet.upper():
        return []
    try:
        root = ET.fromstring(packet)
    except ET.ParseError:
        return []
    parts = []
    for element in root.iter():
        parts += [v for k, v in element.attrib.items() if k in _XMP_FIELDS]
        if element.tag in _XMP_FIELDS:
            items = [li.text or "" for li in element.iter(_RDF_LI)]
            parts += items if items else [element.text or ""]
    return [p[:_VALUE_CAP] for p in parts]


def _decode_xmp(raw: bytes) -> str:
    import codecs

    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return raw.decode("utf-16", "replace")
    if raw[:2] in (b"<\x00", b"\x00<"):
        return raw.decode("utf-16-le" if raw[0] else "utf-16-be", "replace")
    return raw.decode("utf-8", "replace")


def _iptc_parts(info: dict) -> list[str]:
    utf8 = info.get((1, 90)) == b"\x1b%G"  # IPTC's coded character set: UTF-8
    parts = []
    for dataset in _IPTC_DATASETS:
        values = info.get(dataset, [])
        for value in values if isinstance(values, list) else [values]:
            if isinstance(value, bytes):
                value = value[:_VALUE_CAP]
                parts.append(value.decode("utf-8", "replace") if utf8 else _bytes_text(value))
    return parts


def _png_parts(data: bytes) -> list[str]:
    """PNG text chunks (tEXt, zTXt, iTXt), XMP and eXIf, walked without Pillow: Pillow reads
    chunks after the pixel data only by decoding the pixels."""
    import struct

    parts: list[str] = []
    xmp, exif, offset = None, None, 8
    while offset + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        start, offset = offset + 8, offset + 12 + length
        if kind == b"IEND" or offset > len(data):  # the end, or a chunk cut short
            break
        if kind == b"eXIf":
            exif = data[start : start + length]
        elif kind in (b"tEXt", b"zTXt", b"iTXt"):
            key, text = _png_text(kind, data[start : start + length])
            if key.lower() in _PNG_TEXT_KEYS:
                parts.append(text)
            elif key == "XML:com.adobe.xmp":
                xmp = text
    if exif:
        parts = _safely(_exif_from, exif) + parts
    return parts + _safely(_xmp_parts, xmp)


def _exif_from(raw: bytes) -> list[str]:
    from PIL import Image

    exif = Image.Exif()
    exif.load(raw)
    return _exif_parts(exif)


def _png_text(kind: bytes, body: bytes) -> tuple[str, str]:
    key, _, rest = body.partition(b"\x00")
    name = key.decode("latin-1")
    if kind == b"tEXt":
        return name, rest.decode("latin-1")[:_VALUE_CAP]
    if kind == b"zTXt":
        return name, _inflate(rest[1:]).decode("latin-1")[:_VALUE_CAP]
    compressed, rest = rest[:1] == b"\x01", rest[2:]  # iTXt: flag, method, language, key, text
    _, _, rest = rest.partition(b"\x00")
    _, _, text = rest.partition(b"\x00")
    return name, (_inflate(text) if compressed else text).decode("utf-8", "replace")[:_VALUE_CAP]


def _inflate(raw: bytes) -> bytes:
    """At most _XMP_CAP bytes out of a zlib stream (a small chunk can inflate enormously)."""
    import zlib

    try:
        return zlib.decompressobj().decompress(raw, _XMP_CAP)
    except zlib.error:
        return b""
