"""Text that belongs to items, searchable: sidecar captions, embedded descriptions, file names,
printed words (OCR) and text items, matched by words and substrings and fused with vectors."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from xmodal.catalog import Catalog
from xmodal.catalog_schema import MIGRATIONS
from xmodal.engine.collection import Collection
from xmodal.engine.hybrid import parse_fusion
from xmodal.errors import InvalidInputError


def font(size: int) -> ImageFont.FreeTypeFont:
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf"
    return ImageFont.truetype(str(path), size)


def printed(path: Path, words: str, size=(900, 320)) -> Path:
    """A sign: dark words printed large on a light card."""
    image = Image.new("RGB", size, (245, 240, 225))
    ImageDraw.Draw(image).text((40, 110), words, font=font(72), fill=(20, 20, 30))
    image.save(path)
    return path


@pytest.fixture
def library(tmp_path, photo_by_name):
    """Real photos with sidecar captions, a printed sign, and a text note."""
    root = tmp_path / "library"
    root.mkdir()
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        shutil.copy(photo_by_name[name].path, root / f"{name}.png")
    (root / "coffee.txt").write_text("morning espresso at the Blue Heron cafe", encoding="utf-8")
    (root / "rocket.png.json").write_text(
        json.dumps({"title": "rocket.png", "description": "Saturn V on the launch pad"}),
        encoding="utf-8",
    )
    (root / "chelsea.txt").write_text("बिल्ली धूप में सो रही है", encoding="utf-8")
    printed(root / "sign.png", "KA01AB1234")
    (root / "notes.md").write_text(
        "# Trip notes\n\nWe took the **night train** to Varanasi and saw the ghats.",
        encoding="utf-8",
    )
    return root


@pytest.fixture
def indexed(tmp_path, library, lite):
    with Collection.open(tmp_path / "db", lite) as collection:
        collection.index([library])
        yield collection


def names(hits) -> list[str]:
    return [Path(h.path).name for h in hits]


def test_sidecar_captions_and_text_items_are_searchable(indexed, library):
    assert indexed.count() == 6  # 5 images and the note; the sidecars are not items
    kinds = {
        Path(indexed.get(h.id).path).name: indexed.get(h.id).kind
        for h in indexed.search("notes", k=10, mode="text")
    }
    assert kinds == {"notes.md": "text"}
    assert names(indexed.search("Blue Heron", k=3))[0] == "coffee.png"
    assert names(indexed.search("Saturn launch pad", k=3))[0] == "rocket.png"
    # A Hindi caption is found by its words (FTS5 keeps combining marks inside words).
    assert names(indexed.search("बिल्ली", k=3, mode="text")) == ["chelsea.png"]
    # The note is found by meaning through its vector and by its words.
    assert names(indexed.search("night train to Varanasi", k=2))[0] == "notes.md"
    hit = indexed.search("Blue Heron", k=1)[0]
    assert hit.text_score is not None and hit.vector_score is not None


def test_item_texts_are_kept_per_source(indexed, library):
    item = indexed._catalog.item_at(os.fsencode(library / "rocket.png"))
    text = indexed.item_texts([item.id])[item.id]
    assert "Saturn V on the launch pad" in text.caption
    assert text.filename == "rocket"
    assert item.caption == text.caption


def test_type_filter_and_modes(indexed):
    only_text = indexed.search("trip", k=10, where={"type": "text"})
    assert names(only_text) == ["notes.md"]
    vector_hits = indexed.search("Blue Heron", k=6, mode="vector")
    assert all(h.text_score is None for h in vector_hits)
    assert indexed.search("zzzzqqq", k=5, mode="text") == []
    with pytest.raises(InvalidInputError):
        indexed.search("cat", mode="fuzzy")
    with pytest.raises(InvalidInputError):
        indexed.search("   ")


@pytest.mark.parametrize(
    "query", ['"', "NEAR(a b)", "a* OR -b", "col:caption", "^x", "()", "'; DROP TABLE files;--"]
)
def test_hostile_full_text_queries_are_plain_words(indexed, query):
    indexed.search(query, k=3)  # no error: FTS5 syntax in a query is taken as text
    assert indexed.count() == 6


def test_an_edited_sidecar_is_read_again_without_re_embedding(tmp_path, library, lite):
    with Collection.open(tmp_path / "db", lite) as collection:
        collection.index([library])
        (library / "coffee.txt").write_text("a flat white in Lisbon", encoding="utf-8")
        report = collection.index([library])
        assert (report.recaptioned, report.embedded) == (1, 0)
        assert names(collection.search("Lisbon", k=1, mode="text")) == ["coffee.png"]
        assert collection.search("Heron", k=3, mode="text") == []
        (library / "coffee.txt").unlink()
        assert collection.index([library]).recaptioned == 1
        assert collection.search("Lisbon", k=3, mode="text") == []


def test_a_moved_file_keeps_its_text_under_its_new_name(tmp_path, library, lite):
    with Collection.open(tmp_path / "db", lite) as collection:
        collection.index([library])
        (library / "rocket.png").rename(library / "moon_shot.png")
        (library / "rocket.png.json").rename(library / "moon_shot.png.json")
        report = collection.index([library])
        assert report.moved == 1
        assert names(collection.search("moon shot", k=1, mode="text")) == ["moon_shot.png"]
        assert names(collection.search("Saturn", k=1, mode="text")) == ["moon_shot.png"]


def test_substring_matches_part_of_a_token(tmp_path, lite):
    root = tmp_path / "plates"
    root.mkdir()
    for i, plate in enumerate(["KA01AB1234", "MH12XY9876", "DL05CD4321"]):
        image = printed(root / f"car{i}.png", plate)
        (root / f"car{i}.txt").write_text(f"number plate {plate}", encoding="utf-8")
        assert image.exists()
    with Collection.open(tmp_path / "db", lite) as collection:
        collection.index([root])
        # The first half of a plate, and its middle: a word index alone finds neither.
        assert names(collection.search("KA01A", k=1, mode="text")) == ["car0.png"]
        assert names(collection.search("XY98", k=1, mode="text")) == ["car1.png"]


def test_fusion_specs():
    assert parse_fusion("rrf:k=30").k == 30
    weighted = parse_fusion("weighted")
    assert (weighted.vector, weighted.text) == (0.7, 0.3)
    for bad in (
        "rrf:k=0",
        "weighted:text=-1",
        "bm25",
        "rrf:x=1",
        "rrf:k=2.5",
        "rrf:text=0,vector=0",
    ):
        with pytest.raises(InvalidInputError):
            parse_fusion(bad)


def test_weighted_fusion_also_puts_the_caption_match_first(indexed):
    hits = indexed.search("Blue Heron cafe", k=3, fusion="weighted:text=0.5,vector=0.5")
    assert names(hits)[0] == "coffee.png"


def test_a_version_3_catalog_keeps_its_captions_and_gains_file_names(tmp_path):
    path = tmp_path / "catalog.sqlite"
    db = sqlite3.connect(path)
    for version, script in enumerate(MIGRATIONS[:3]):
        db.executescript(f"BEGIN; {script}; PRAGMA user_version = {version + 1}; COMMIT;")
    db.execute(
        "INSERT INTO files (path, size, mtime_ns, hash, width, height, caption)"
        " VALUES (?, 1, 1, ?, 2, 2, 'a red bicycle')",
        (b"/photos/summer_holiday.jpg", b"h" * 16),
    )
    db.execute(
        "INSERT INTO vectors (id, vector) VALUES (1, ?)", (np.ones(4, np.float32).tobytes(),)
    )
    db.commit()
    db.close()
    catalog = Catalog(path)
    try:
        assert catalog.item(1).caption == "a red bicycle"
        assert catalog.texts([1])[1].filename == "summer holiday"
        assert [i for i, _ in catalog.match_text("bicycle", 5)] == [1]
        assert [i for i, _ in catalog.match_text("holiday", 5)] == [1]
    finally:
        catalog.close()


def turned_with_exif(path: Path, words: str) -> Path:
    """A sign stored a quarter turn away, with the EXIF orientation that turns it upright
    (what a phone writes): only a reader that applies the orientation sees the words level."""
    upright = Image.open(printed(path.with_suffix(".tmp.png"), words)).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # display: rotate 90° clockwise
    upright.transpose(Image.Transpose.ROTATE_90).save(path, "JPEG", quality=95, exif=exif)
    path.with_suffix(".tmp.png").unlink()
    return path


@pytest.mark.slow
def test_printed_words_find_their_image_first(tmp_path, library, lite):
    printed(library / "poster.png", "PHARMACY OPEN 24 HOURS")
    turned_with_exif(library / "phone.jpg", "PLATFORM 9 EXIT")
    Image.open(printed(library / "scan.png", "INVOICE 4471")).rotate(90, expand=True).save(
        library / "scan.png"
    )
    with Collection.open(tmp_path / "db", lite) as collection:
        report = collection.index([library], ocr=True)
        assert report.ocr_read == 8  # each image once
        by_vector = names(collection.search("pharmacy open 24 hours", k=8, mode="vector"))
        assert names(collection.search("pharmacy open 24 hours", k=1)) == ["poster.png"]
        assert by_vector[0] != "poster.png"  # the vector alone does not rank it first
        assert names(collection.search("platform 9 exit", k=1)) == ["phone.jpg"]
        assert names(collection.search("invoice 4471", k=1)) == ["scan.png"]
        assert names(collection.search("KA01AB1234", k=1)) == ["sign.png"]
        assert names(collection.search("B123", k=1, mode="text")) == ["sign.png"]
        # Incremental: a second run reads nothing again; a copy shares the words read.
        shutil.copy(library / "poster.png", library / "poster-copy.png")
        again = collection.index([library], ocr=True)
        assert (again.ocr_read, again.embedded) == (0, 0)
        found = names(collection.search("pharmacy", k=2, mode="text"))
        assert sorted(found) == ["poster-copy.png", "poster.png"]
