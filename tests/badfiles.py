"""A folder of files that break naive image indexers, with the skip reason each must get.

corpus = make_bad_files(tmp_path / "bad", good_png=some_photo)
corpus.bad   # path (bytes) -> a substring the skip reason must contain
corpus.good  # odd-looking files that are real images and must be indexed
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image


@dataclass
class BadFileCorpus:
    folder: Path
    bad: dict[bytes, str] = field(default_factory=dict)
    good: list[bytes] = field(default_factory=list)


def png_declaring(width: int, height: int) -> bytes:
    """A valid PNG header that claims width x height pixels, with one tiny data chunk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def make_bad_files(folder: Path, good_png: Path) -> BadFileCorpus:
    folder.mkdir(parents=True, exist_ok=True)
    corpus = BadFileCorpus(folder)
    png = good_png.read_bytes()
    jpeg = io.BytesIO()
    Image.open(good_png).convert("RGB").save(jpeg, format="JPEG", quality=90)

    def write(name: bytes, data: bytes, reason: str) -> bytes:
        path = os.path.join(os.fsencode(folder), name)
        with open(path, "wb") as f:
            f.write(data)
        corpus.bad[path] = reason
        return path

    write(b"empty.jpg", b"", "empty")
    write(b"truncated.jpg", jpeg.getvalue()[: len(jpeg.getvalue()) // 2], "truncated")
    write(b"truncated.png", png[: len(png) // 2], "truncated")
    write(b"notes.jpg", b"shopping list: milk, eggs\n" * 20, "not an image")
    write(b"bomb.png", png_declaring(30000, 30000), "30000x30000")

    locked = write(b"locked.png", png, "permission denied")
    os.chmod(locked, 0)
    if os.access(locked, os.R_OK):  # root reads anything: then it is simply a good image
        del corpus.bad[locked]
        corpus.good.append(locked)

    # Not bad, only odd: a name that is not valid UTF-8, and a folder named like an image
    # (walked like any folder, so the image inside is found).
    odd_name = os.path.join(os.fsencode(folder), b"bad\xff.png")
    with open(odd_name, "wb") as f:
        f.write(png)
    corpus.good.append(odd_name)
    inside = folder / "x.jpg" / "inside.png"
    inside.parent.mkdir()
    Image.new("RGB", (40, 30), (200, 30, 90)).save(inside)
    corpus.good.append(os.fsencode(inside))
    return corpus
