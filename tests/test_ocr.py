"""OCR with the real packaged PP-OCRv4 models on PIL-rendered print and real photos."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from xmodal.errors import InvalidInputError, MissingDataError
from xmodal.ocr import OcrReader

pytest.importorskip("rapidocr_onnxruntime")

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")
LINES = ["Harbour Lights", "Closed on Mondays"]


def _font(size: int) -> ImageFont.FreeTypeFont:
    if not FONT.is_file():
        raise MissingDataError(
            "DejaVu fonts are missing: install the Debian package fonts-dejavu-core"
        )
    return ImageFont.truetype(str(FONT), size)


def _printed(background: Image.Image, lines=LINES, size: int = 44) -> Image.Image:
    """Dark words on a light band over `background`, one line under the other."""
    image = background.convert("RGB").resize((900, 420))
    draw = ImageDraw.Draw(image)
    font = _font(size)
    draw.rectangle((20, 40, 880, 80 + 120 * len(lines)), fill=(245, 245, 240))
    for i, line in enumerate(lines):
        draw.text((40, 60 + 120 * i), line, font=font, fill=(20, 20, 20))
    return image


@pytest.fixture(scope="module")
def reader():
    return OcrReader()


@pytest.fixture(scope="module")
def coffee(photo_by_name):
    return Image.open(photo_by_name["coffee"].path).convert("RGB")


def test_reads_printed_words_on_a_photo(reader, coffee):
    image = _printed(coffee)
    reader.read(image)  # the models load once
    start = time.perf_counter()
    result = reader.read(image)
    print(f"\nOCR, upright 900x420: {time.perf_counter() - start:.2f} s")
    assert result.text.lower() == "\n".join(LINES).lower()
    assert [line.text.lower() for line in result.lines] == [t.lower() for t in LINES]
    first = result.lines[0]
    assert first.score > 0.9
    xs, ys = [x for x, _ in first.box], [y for _, y in first.box]
    assert 20 <= min(xs) < 80 and 40 <= min(ys) < 90 and max(ys) < 140


def test_words_on_one_row_read_left_to_right(reader):
    image = Image.new("RGB", (1000, 400), "white")
    draw = ImageDraw.Draw(image)
    draw.text((40, 70), "Left column", font=_font(44), fill="black")
    draw.text((600, 75), "Right column", font=_font(44), fill="black")
    assert reader.read(image).text.lower() == "left column right column"


@pytest.mark.slow
@pytest.mark.parametrize("angle", [90, 180, 270])
def test_text_turned_by_pixels_still_reads(reader, coffee, angle):
    turned = _printed(coffee).rotate(angle, expand=True)
    start = time.perf_counter()
    result = reader.read(turned)
    print(f"\nOCR, turned {angle}: {time.perf_counter() - start:.2f} s")
    assert result.text.lower() == "\n".join(LINES).lower()
    # Boxes are in the pixels of the image given.
    for line in result.lines:
        assert all(0 <= x <= turned.width and 0 <= y <= turned.height for x, y in line.box)


def test_without_rotations_a_sideways_scan_loses_its_order(coffee):
    turned = _printed(coffee).rotate(90, expand=True)
    assert OcrReader(rotations=False).read(turned).text.lower() != "\n".join(LINES).lower()


def test_photos_without_text_give_nothing(reader, photo_by_name):
    for name in ("chelsea", "astronaut", "horse"):
        image = Image.open(photo_by_name[name].path).convert("RGB")
        assert reader.read(image).text == "", name


def test_large_images_are_read_downscaled(reader):
    big = Image.new("RGB", (4800, 3600), "white")
    ImageDraw.Draw(big).text((300, 1500), "Platform Seven", font=_font(260), fill="black")
    result = reader.read(big)
    assert result.text.lower() == "platform seven"
    # Boxes come back in the big image's pixels.
    assert max(x for x, _ in result.lines[0].box) > 2000


def test_bad_input_and_tiny_images(reader):
    with pytest.raises(InvalidInputError):
        reader.read("page.png")
    assert reader.read(Image.new("RGB", (4, 300), "white")).text == ""
    with pytest.raises(InvalidInputError):
        OcrReader(min_score=2)


def test_one_reader_shared_by_threads(reader, coffee):
    image = _printed(coffee)
    texts: list[str] = []
    threads = [
        threading.Thread(target=lambda: texts.append(reader.read(image).text)) for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [t.lower() for t in texts] == ["\n".join(LINES).lower()] * 3
