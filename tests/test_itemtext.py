"""Text that belongs to a file: sidecars, embedded metadata, file names and text items, on real
files written with Pillow and by hand (APP13, PNG chunks), the real sample photos and wallpapers."""

from __future__ import annotations

import glob
import io
import json
import os
import random
import struct
import zlib

import pytest
from PIL import Image, ImageFile, TiffImagePlugin
from PIL.PngImagePlugin import PngInfo

from xmodal.errors import InvalidInputError, MissingDataError
from xmodal.itemtext import (
    ItemText,
    embedded_text,
    filename_words,
    is_sidecar,
    item_text_for,
    read_text_item,
    sidecar_texts,
)
from xmodal.samples import sample_photos

HINDI = "बिल्ली की फोटो"


def xmp_packet(inner: str) -> bytes:
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"'
        ' xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/"'
        ' xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"'
        f"{inner}</rdf:Description></rdf:RDF></x:xmpmeta>"
        '<?xpacket end="w"?>'
    ).encode()


XMP = xmp_packet(
    ' photoshop:Headline="Harbour at dawn">'
    f'<dc:title><rdf:Alt><rdf:li xml:lang="x-default">{HINDI}</rdf:li></rdf:Alt></dc:title>'
    "<dc:description><rdf:Alt><rdf:li xml:lang='x-default'>Boats in the fog</rdf:li>"
    "</rdf:Alt></dc:description>"
    "<dc:subject><rdf:Bag><rdf:li>boat</rdf:li><rdf:li>fog</rdf:li></rdf:Bag></dc:subject>"
    "<Iptc4xmpExt:PersonInImage><rdf:Bag><rdf:li>Asha</rdf:li></rdf:Bag>"
    "</Iptc4xmpExt:PersonInImage>"
)


def exif_block() -> Image.Exif:
    exif = Image.Exif()
    exif[0x010E] = "A red car"  # ImageDescription
    exif[0x9C9B] = "Old timer".encode("utf-16-le") + b"\0\0"  # XPTitle
    exif[0x9C9E] = "car;vintage".encode("utf-16-le") + b"\0\0"  # XPKeywords
    exif[0x9C9D] = "Somebody".encode("utf-16-le") + b"\0\0"  # XPAuthor: not a description
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\0" + "Parked in Köln".encode("utf-16-le")
    return exif


def iptc_app13(datasets: list[tuple[int, int, bytes]]) -> bytes:
    """A JPEG APP13 segment: Photoshop 3.0 image resources holding an IPTC-NAA (0x0404) block."""
    iptc = b"".join(
        b"\x1c" + bytes([record, number]) + struct.pack(">H", len(value)) + value
        for record, number, value in datasets
    )
    iptc += b"\0" * (len(iptc) % 2)
    resource = b"8BIM" + struct.pack(">H", 0x0404) + b"\0\0" + struct.pack(">I", len(iptc)) + iptc
    body = b"Photoshop 3.0\0" + resource
    return b"\xff\xed" + struct.pack(">H", len(body) + 2) + body


def jpeg(**save) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 24), "red").save(out, format="JPEG", **save)
    return out.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def with_chunk_before_iend(png: bytes, chunk: bytes) -> bytes:
    return png[:-12] + chunk + png[-12:]


# -- embedded_text -------------------------------------------------------------------------------


def test_jpeg_exif_xmp_and_iptc_are_read():
    iptc = iptc_app13(
        [
            (1, 90, b"\x1b%G"),  # UTF-8
            (2, 105, b"Harbour at dawn"),  # headline, also in the XMP: once
            (2, 5, b"Fishing boats"),
            (2, 120, "Boote im Nebel über der Förde".encode()),
            (2, 25, b"boat"),
            (2, 25, b"harbour"),
        ]
    )
    data = jpeg(exif=exif_block(), xmp=XMP)
    data = data[:2] + iptc + data[2:]
    assert embedded_text(data) == (
        "A red car. Old timer. car. vintage. Parked in Köln. Harbour at dawn. "
        f"{HINDI}. Boats in the fog. boat. fog. Asha. Fishing boats. "
        "Boote im Nebel über der Förde. harbour"
    )


XMP_WORDS = f"Harbour at dawn. {HINDI}. Boats in the fog. boat. fog. Asha"


def test_webp_tiff_and_gif_metadata():
    out = io.BytesIO()
    Image.new("RGB", (16, 16), "blue").save(out, format="WEBP", exif=exif_block(), xmp=XMP)
    assert embedded_text(out.getvalue()) == (
        f"A red car. Old timer. car. vintage. Parked in Köln. {XMP_WORDS}"
    )
    tags = TiffImagePlugin.ImageFileDirectory_v2()
    tags[270], tags[700] = "Harbour, Kochi", XMP  # ImageDescription, XMP
    out = io.BytesIO()
    Image.new("RGB", (16, 16), "blue").save(out, format="TIFF", tiffinfo=tags)
    assert embedded_text(out.getvalue()) == f"Harbour, Kochi. {XMP_WORDS}"
    # Photoshop's GIF XMP extension, which Pillow does not read: found in the raw bytes.
    out = io.BytesIO()
    Image.new("P", (8, 8)).save(out, format="GIF")
    gif = out.getvalue()
    extension = b"\x21\xff\x0bXMP DataXMP" + XMP + b"\x01" + bytes(range(255, -1, -1)) + b"\x00"
    at = gif.index(b"\x2c")  # the image descriptor
    assert embedded_text(gif[:at] + extension + gif[at:]) == XMP_WORDS


def test_a_broken_block_does_not_hide_the_others():
    broken_iptc = b"\xff\xed\x00\x20Photoshop 3.0\x008BIM\x04\x04\x00\x00\xff\xff\xff\xff\x1c"
    data = jpeg(exif=exif_block(), xmp=b"<x:xmpmeta><unclosed>")
    data = data[:2] + broken_iptc + b"\x00" * 5 + data[2:]
    assert embedded_text(data) == "A red car. Old timer. car. vintage. Parked in Köln"


def test_utf8_image_description_and_ascii_user_comment():
    # ExifTool and phones write UTF-8 into the ASCII-typed ImageDescription; Pillow reads Latin-1.
    description = "Café on the corner".encode() + b"\0"
    comment = b"ASCII\0\0\0Rainy afternoon"
    exif_ifd_offset = 8 + 2 + 2 * 12 + 4
    ifd0 = struct.pack("<H", 2) + struct.pack("<HHII", 0x010E, 2, len(description), 0)
    ifd0 += struct.pack("<HHII", 0x8769, 4, 1, exif_ifd_offset)
    exif_ifd = struct.pack("<H", 1) + struct.pack("<HHII", 0x9286, 7, len(comment), 0) + b"\0" * 4
    data_offset = exif_ifd_offset + len(exif_ifd)
    ifd0 = ifd0[:10] + struct.pack("<I", data_offset) + ifd0[14:]
    comment_offset = data_offset + len(description)
    exif_ifd = exif_ifd[:10] + struct.pack("<I", comment_offset) + exif_ifd[14:]
    tiff = b"II*\0" + struct.pack("<I", 8) + ifd0 + b"\0" * 4 + exif_ifd + description + comment
    assert embedded_text(jpeg(exif=b"Exif\0\0" + tiff)) == "Café on the corner. Rainy afternoon"


@pytest.mark.parametrize(
    "comment",
    [
        b"UNICODE\0" + "Snow on the pass".encode("utf-16-be"),
        b"UNICODE\0" + "Snow on the pass".encode("utf-16-le"),
        b"JIS\0\0\0\0\0" + "Snow on the pass".encode("iso2022_jp"),
        b"\0" * 8 + b"Snow on the pass",  # undefined code: UTF-8 tried
    ],
)
def test_user_comment_encodings(comment):
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = comment
    assert embedded_text(jpeg(exif=exif)) == "Snow on the pass"


def test_japanese_user_comment():
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"JIS\0\0\0\0\0" + "東京タワーの夜景".encode("shift_jis")
    assert embedded_text(jpeg(exif=exif)) == "東京タワーの夜景"


def test_png_text_chunks_exif_and_xmp():
    info = PngInfo()
    info.add_text("Title", "Sunset")
    info.add_text("Software", "GIMP 2.10")  # not a description
    info.add_itxt("Description", "Сонце сідає над морем", zip=True)
    info.add_text("Comment", "Created with GIMP")  # boilerplate
    info.add_itxt("XML:com.adobe.xmp", XMP.decode())
    exif = Image.Exif()
    exif[0x010E] = "Evening"
    out = io.BytesIO()
    Image.new("RGB", (16, 16), "orange").save(out, format="PNG", pnginfo=info, exif=exif)
    # Chunks after the pixel data count too (Pillow itself reads those only by decoding).
    keywords = b"Keywords\0\0" + zlib.compress(b"sea, sky")
    data = with_chunk_before_iend(out.getvalue(), png_chunk(b"zTXt", keywords))
    assert embedded_text(data) == f"Evening. Sunset. Сонце сідає над морем. sea, sky. {XMP_WORDS}"


def test_camera_boilerplate_and_blanks_are_dropped():
    exif = Image.Exif()
    exif[0x010E] = "OLYMPUS DIGITAL CAMERA         "
    exif[0x9C9C] = "   ".encode("utf-16-le") + b"\0\0"  # XPComment
    exif.get_ifd(0x8769)[0x9286] = b"ASCII\0\0\0" + b"\0" * 16
    assert embedded_text(jpeg(exif=exif)) == ""
    exif[0x010E] = "SONY DSC"
    assert embedded_text(jpeg(exif=exif)) == ""


def test_a_real_photo_without_metadata_gives_nothing(tmp_path):
    cat, coffee = sample_photos(tmp_path, ["chelsea", "coffee"])
    assert embedded_text(cat.path.read_bytes()) == ""
    out = io.BytesIO()
    Image.open(coffee.path).convert("RGB").save(out, format="JPEG")
    assert embedded_text(out.getvalue()) == ""


def test_metadata_is_read_without_the_pixels():
    # A JPEG cut where its pixel data starts, claiming 65000 x 65000 pixels (Pillow's own bomb
    # check would refuse it), and a PNG that claims 10^10 pixels.
    data = bytearray(jpeg(exif=exif_block()))
    frame = data.index(b"\xff\xc0")
    data[frame + 5 : frame + 9] = struct.pack(">HH", 65000, 65000)
    assert embedded_text(bytes(data[: data.index(b"\xff\xda")])).startswith("A red car")
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"tEXt", b"Title\0Huge")
    png += png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + png_chunk(b"IEND", b"")
    assert embedded_text(png) == "Huge"


def wallpaper(pattern: str, package: str) -> bytes:
    paths = sorted(glob.glob(pattern), key=os.path.getsize)
    if not paths:  # skipped on a machine without it, a failure under CI (tests/conftest.py)
        raise MissingDataError(f"no wallpapers at {pattern}: install the Debian package {package}")
    with open(paths[-1], "rb") as f:
        return f.read()


def test_real_wallpapers():
    cups = wallpaper(
        "/usr/share/wallpapers/ColorfulCups/contents/images/2560x1600.jpg",
        "plasma-workspace-wallpapers",
    )
    assert embedded_text(cups) == (
        "Colorful cups. Aarhus, Denmark. SONY NEX-3N, SONY E 16-50mm f/3.5-5.6 PZ OSS SELP1650. "
        "Processed in digiKam with 01 preset. Close-up. Colors"
    )
    # "OLYMPUS DIGITAL CAMERA" in EXIF and XMP, and "x-default" as an XMP description.
    darkest = wallpaper(
        "/usr/share/wallpapers/DarkestHour/contents/images/*.jpg", "plasma-workspace-wallpapers"
    )
    assert embedded_text(darkest) == ""


def test_a_16_mb_wallpaper_is_read_without_decoding_it(monkeypatch):
    data = wallpaper("/usr/share/backgrounds/mate/*/*.jpg", "mate-backgrounds")

    decoded = []
    # Decoding these pixels takes about a second here; reading the headers a millisecond or two.
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda image: decoded.append(image))
    assert embedded_text(data) == ""
    assert decoded == []


def test_xmp_with_a_dtd_or_entities_is_refused():
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
        b'xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>&b;</dc:title>'
        b"</rdf:Description></rdf:RDF></x:xmpmeta>"
    )
    assert embedded_text(jpeg(xmp=bomb)) == ""
    exif = Image.Exif()
    exif[0x010E] = "Still read"
    assert embedded_text(jpeg(xmp=bomb, exif=exif)) == "Still read"


def test_truncated_files_give_all_or_nothing():
    # Pillow needs a JPEG's frame header, which follows every metadata segment.
    data = jpeg(exif=exif_block(), xmp=XMP)
    full = embedded_text(data)
    results = {embedded_text(data[:cut]) for cut in range(0, len(data), 7)}
    assert results == {"", full}
    info = PngInfo()
    info.add_itxt("Title", HINDI, zip=True)
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, format="PNG", pnginfo=info)
    png = out.getvalue()
    assert {embedded_text(png[:cut]) for cut in range(0, len(png), 3)} == {"", HINDI}


def test_random_and_non_image_bytes_never_raise():
    rng = random.Random(13)
    assert embedded_text(b"") == ""
    assert embedded_text(b"shopping list: milk, eggs\n" * 20) == ""
    for _ in range(200):
        assert embedded_text(rng.randbytes(rng.randrange(1, 600))) == ""
    good = jpeg(exif=exif_block(), xmp=XMP)
    for _ in range(200):  # flipped bytes inside real metadata
        broken = bytearray(good)
        for _ in range(8):
            broken[rng.randrange(2, 400)] = rng.randrange(256)
        assert isinstance(embedded_text(bytes(broken)), str)


def test_embedded_text_is_capped():
    exif = Image.Exif()
    exif[0x010E] = "word " * 1500
    exif[0x9C9B] = ("other " * 1500).encode("utf-16-le")
    text = embedded_text(jpeg(exif=exif))
    assert 8000 < len(text.encode()) <= 8 * 1024


# -- sidecar_texts -------------------------------------------------------------------------------


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "IMG_1234.jpg"
    path.write_bytes(jpeg())
    return path


def test_plain_text_sidecars(image):
    image.with_name("IMG_1234.txt").write_text("A walk on the beach.\n\n")
    image.with_name("IMG_1234.jpg.txt").write_text("Sunset   over the sea")
    assert sidecar_texts(os.fsencode(image)) == "A walk on the beach. Sunset over the sea"


def test_sidecar_in_utf16_and_hindi(image):
    image.with_name("IMG_1234.txt").write_bytes(f"{HINDI}\n".encode("utf-16"))
    image.with_name("IMG_1234.jpg.json").write_text(json.dumps({"title": HINDI, "tags": ["बिल्ली"]}))
    assert sidecar_texts(os.fsencode(image)) == f"{HINDI}. बिल्ली"


def test_takeout_sidecar(image):
    takeout = {
        "title": "Holiday photo.JPG",  # just a file name (the one it was uploaded as)
        "description": "Grandma's birthday",
        "imageViews": "3",
        "people": [{"name": "Asha"}, {"name": "Ravi"}, {"nope": 1}],
        "photoTakenTime": {"timestamp": "1690000000"},
    }
    image.with_name("IMG_1234.jpg.supplemental-metadata.json").write_text(json.dumps(takeout))
    assert sidecar_texts(os.fsencode(image)) == "Grandma's birthday. Asha. Ravi"


def test_simple_json_sidecars(image):
    image.with_name("IMG_1234.json").write_text(
        json.dumps({"caption": "Two dogs", "title": "Park day", "tags": ["dog", "park", "Dog"]})
    )
    image.with_name("IMG_1234.jpg.json").write_text(
        json.dumps({"Description": "Two dogs", "keywords": "grass, ball", "rating": 5})
    )
    assert sidecar_texts(os.fsencode(image)) == "Two dogs. Park day. dog. park. grass. ball"


def test_bad_sidecars_are_skipped(image):
    image.with_name("IMG_1234.txt").write_bytes(b"caf\xe9 au lait")  # not UTF-8
    image.with_name("IMG_1234.json").write_text('{"caption": "unterminated')
    image.with_name("IMG_1234.jpg.json").write_text("[" * 60_000)  # nesting past the recursion
    image.with_name("IMG_1234.jpg.txt").write_bytes(b"\x00\x01binary")
    image.with_name("IMG_1234.jpg.supplemental-metadata.json").write_text('["a list"]')
    assert sidecar_texts(os.fsencode(image)) == ""
    os.mkdir(image.with_name("other.txt"))  # a folder where a sidecar would be
    assert sidecar_texts(os.fsencode(image.with_name("other.jpg"))) == ""


def test_sidecar_read_is_capped(image):
    image.with_name("IMG_1234.txt").write_text("é" + "word " * 40_000)  # 200 KB
    image.with_name("IMG_1234.json").write_text(json.dumps({"caption": "x" * 100_000}))
    text = sidecar_texts(os.fsencode(image))
    assert text.startswith("éword word") and len(text.encode()) <= 64 * 1024


def test_item_text_for(image):
    image.with_name("IMG_1234.txt").write_text("Harbour")
    exif = Image.Exif()
    exif[0x010E] = "Boats"
    image.write_bytes(jpeg(exif=exif))
    path = os.fsencode(image)
    assert item_text_for(path, image.read_bytes()) == ItemText(
        caption="Harbour", embedded="Boats", filename="IMG 1234"
    )


# -- filename_words ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "words"),
    [
        (b"IMG_2023-06-01_beach-sunset(2).jpg", "IMG 2023 06 01 beach sunset 2"),
        (b"/photos/2023/redCarFront.png", "red Car Front"),
        (b"HTMLParserDemo.jpeg", "HTML Parser Demo"),
        ("बिल्ली_की_फोटो.jpg".encode(), HINDI),
        ("नमस्ते-दुनिया.png".encode(), "नमस्ते दुनिया"),
        ("Café crème.tar.gz".encode(), "Café crème tar"),
        (b"caf\xe9 au lait.jpg", "caf\ufffd au lait"),
        (b".hidden", "hidden"),
        (b"___.jpg", ""),
    ],
)
def test_filename_words(name, words):
    assert filename_words(name) == words


# -- text items ----------------------------------------------------------------------------------

MARKDOWN = """# Trip to *Goa*

Some **bold** words, a [link](https://example.org/x "title") and ![a palm](palm.png).
> quoted `code` and snake_case_name stays

- item one <!-- a note to self -->
1. item two
---
| col | other |
|-----|:-----:|
| a   | b     |

```python
print("kept")
```
[ref]: https://example.org
"""


def test_markdown_is_stripped_lightly():
    assert read_text_item(MARKDOWN.encode(), b"notes/trip.md") == (
        "Trip to Goa Some bold words, a link and a palm. quoted code and snake_case_name stays "
        'item one item two col other a b print("kept")'
    )


def test_plain_text_keeps_its_markup():
    body = "# not a heading in a .txt   file\n*stars*\n"
    assert read_text_item(body.encode(), b"a.txt") == "# not a heading in a .txt file *stars*"


def test_text_encodings():
    text = f"{HINDI}\r\nline two"
    assert read_text_item(text.encode("utf-16"), b"a.txt") == f"{HINDI} line two"
    utf16_be = b"\xfe\xff" + text.encode("utf-16-be")
    assert read_text_item(utf16_be, b"a.txt") == f"{HINDI} line two"
    assert read_text_item(b"\xef\xbb\xbf" + text.encode(), b"a.md") == f"{HINDI} line two"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"caf\xe9 au lait", "not a text file"),
        (b"PK\x03\x04\x00\x00binary", "not a text file"),
        ("hello".encode("utf-32"), "not a text file"),
        (b"", "empty"),
        (b" \n\t\r\n", "empty"),
        (b"```\n```\n---\n", "empty"),
    ],
)
def test_non_text_is_refused(data, message):
    with pytest.raises(InvalidInputError, match=message):
        read_text_item(data, b"x.md")


def test_text_body_is_capped():
    body = ("ä" + "word " * 30_000).encode()  # 150 KB; cut inside a character is fine
    text = read_text_item(body, b"big.txt")
    assert text.startswith("äword") and 64 * 1024 - 8 < len(text.encode()) <= 64 * 1024
    big = b"x" * (4 * 64 * 1024 - 1) + "é".encode()  # the prefix ends inside "é"
    assert read_text_item(big, b"big.txt") == "x" * 64 * 1024


def test_is_sidecar():
    siblings = {b"IMG_1.JPG", b"IMG_2.png", b"notes.txt", b"IMG_3.jpg", b"a.md"}
    assert is_sidecar(b"/p/IMG_1.txt", siblings)
    assert is_sidecar(b"/p/IMG_2.json", siblings)
    assert is_sidecar(b"/p/IMG_3.jpg.txt", siblings)
    assert is_sidecar(b"/p/IMG_3.jpg.json", siblings)
    assert is_sidecar(b"/p/IMG_3.jpg.supplemental-metadata.json", siblings)
    assert is_sidecar(b"/p/IMG_2.txt", {b"/p/IMG_2.png"})  # full paths do too
    assert not is_sidecar(b"/p/notes.txt", siblings)
    assert not is_sidecar(b"/p/IMG_4.txt", siblings)
    assert not is_sidecar(b"/p/IMG_1.md", siblings)  # a text item, never a sidecar
    assert not is_sidecar(b"/p/a.md.txt", siblings)
