"""Printed words in images: PP-OCRv4 detection and recognition on ONNX Runtime (rapidocr).

`OcrReader.read` takes an upright RGB image (EXIF already applied by `load_image`) and returns
its lines in reading order. A scan turned by pixels (a page photographed sideways) has no EXIF
to say so, so when the upright pass finds little text the quarter turns are tried as well and
the reading with the most confident characters wins.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from PIL import Image

from xmodal.errors import InvalidInputError, MissingExtraError

Point = tuple[int, int]

# Longest side the detector sees. On a 4000x3000 page with 32 px print: 1000 px loses lines,
# 1600 px reads them all in 1.4 s, 2000 px (rapidocr's own cap) reads no better in 2.1 s.
DEFAULT_MAX_SIDE = 1600
# Recognised lines below this confidence are mostly noise read off textures.
DEFAULT_MIN_SCORE = 0.6
# An upright reading is doubted, and the other quarter turns read too, when it is worth less
# than this (sum of score x characters: a line of a few confident words is worth far more), when
# its characters' mean confidence is below _DOUBTFUL_SCORE (text read upside down or sideways
# comes out as confident-looking garbage around 0.7-0.8, upright print at 0.95+), or when most
# of its characters sit in tall boxes (sideways lines, which rapidocr turns and reads one by one
# but cannot put in reading order).
_WEAK_READING = 12.0
_DOUBTFUL_SCORE = 0.9
_TALL = 1.5
# rapidocr's own floor, below ours: a pass that returns nothing at all found no text regions,
# and turning the image will not find any either.
_ENGINE_FLOOR = 0.3
_MIN_SIDE = 8


@dataclass(frozen=True)
class OcrLine:
    text: str
    score: float
    # Corners (top-left, top-right, bottom-right, bottom-left of the text) in pixels of the
    # image given to `read`.
    box: tuple[Point, Point, Point, Point]


@dataclass(frozen=True)
class OcrResult:
    text: str
    lines: list[OcrLine]

    @property
    def weight(self) -> float:
        """How much confident text was read: sum of score x characters."""
        return sum(line.score * len(line.text) for line in self.lines)


class OcrReader:
    """Loads the OCR models once, on first use. Safe to share between threads: rapidocr keeps
    per-call state on its detector, so calls are serialised by a lock (each call already uses
    every core through ONNX Runtime's own threads)."""

    def __init__(
        self,
        *,
        min_score: float = DEFAULT_MIN_SCORE,
        max_side: int = DEFAULT_MAX_SIDE,
        rotations: bool = True,
        num_threads: int | None = None,
    ):
        if not 0.0 <= min_score <= 1.0:
            raise InvalidInputError(f"min_score must be in [0, 1], got {min_score}")
        if max_side < 64:
            raise InvalidInputError(f"max_side must be at least 64 pixels, got {max_side}")
        self.min_score = min_score
        self.max_side = max_side
        self.rotations = rotations
        self.num_threads = num_threads
        self._engine = None
        self._lock = threading.Lock()

    def _load(self):
        if self._engine is None:
            try:
                from rapidocr_onnxruntime import RapidOCR
            except ImportError as e:
                raise MissingExtraError("OCR", "ocr", "rapidocr_onnxruntime") from e
            options = {"intra_op_num_threads": self.num_threads} if self.num_threads else {}
            self._engine = RapidOCR(text_score=min(self.min_score, _ENGINE_FLOOR), **options)
        return self._engine

    def read(self, image: Image.Image) -> OcrResult:
        """The text printed on `image` (an RGB PIL image), lines top to bottom, left to right."""
        if not isinstance(image, Image.Image):
            raise InvalidInputError(f"OCR reads a PIL image, got {type(image).__name__}")
        if min(image.size) < _MIN_SIDE:
            return OcrResult("", [])
        scale = min(1.0, self.max_side / max(image.size))
        small = image.convert("RGB")
        if scale < 1.0:
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            small = small.resize(size, Image.Resampling.LANCZOS)
        pixels = np.asarray(small)[:, :, ::-1]  # RGB -> BGR, as rapidocr expects
        with self._lock:
            engine = self._load()
            raw, tall = self._detect(engine, pixels, 0)
            found = [line for line in raw if line[2] >= self.min_score]
            best, best_turns = found, 0
            # A weak reading, or none but with text regions standing upright (a line turned
            # sideways reads as blanks), is read at the other quarter turns too; a photo with no
            # text region costs one pass.
            if self.rotations and ((found and _doubtful(found)) or (not found and tall)):
                for turns in (1, 2, 3):
                    other = [
                        line
                        for line in self._detect(engine, pixels, turns)[0]
                        if line[2] >= self.min_score
                    ]
                    if _level_weight(other) > _level_weight(best):
                        best, best_turns = other, turns
        return self._result(best, best_turns, pixels.shape, scale)

    @staticmethod
    def _detect(
        engine, pixels: np.ndarray, turns: int
    ) -> tuple[list[tuple[np.ndarray, str, float]], bool]:
        """The lines read, and whether a text region (read or not) stands taller than wide."""
        # No per-crop direction classifier: the whole image is turned instead, and a crop read
        # upside down must score low for the turns to be told apart.
        found, _ = engine(np.ascontiguousarray(np.rot90(pixels, turns)), use_cls=False)
        lines, tall = [], False
        for corners, text, score in found or []:
            corners = np.asarray(corners, np.float32)
            tall |= _height(corners) > _TALL * _width(corners)
            if str(text).strip():
                lines.append((corners, str(text).strip(), float(score)))
        return lines, tall

    @staticmethod
    def _result(found: list, turns: int, shape: tuple, scale: float) -> OcrResult:
        height, width = shape[:2]
        rows = _reading_order(found)
        out = []
        for row in rows:
            for corners, text, score in row:
                box = _unturn(corners, turns, width, height) / scale
                points = tuple((round(float(x)), round(float(y))) for x, y in box)
                out.append(OcrLine(text, score, points))
        text = "\n".join(" ".join(t for _, t, _ in row) for row in rows)
        return OcrResult(text, out)


def _doubtful(found: list[tuple[np.ndarray, str, float]]) -> bool:
    chars = sum(len(t) for _, t, _ in found)
    weight = sum(s * len(t) for _, t, s in found)
    return (
        weight < _WEAK_READING
        or weight < _DOUBTFUL_SCORE * chars
        or _level_weight(found) * 2 < weight
    )


def _level_weight(found: list[tuple[np.ndarray, str, float]]) -> float:
    """Sum of score x characters over the lines that lie level: of two turns that read the same
    crops, the one where the lines run across the image is the one with a reading order."""
    return sum(s * len(t) for c, t, s in found if _height(c) < _TALL * _width(c))


def _width(corners: np.ndarray) -> float:
    return float(np.linalg.norm(corners[0] - corners[1]))


def _height(corners: np.ndarray) -> float:
    return float(np.linalg.norm(corners[0] - corners[3]))


def _reading_order(lines: list[tuple[np.ndarray, str, float]]) -> list[list]:
    """Group boxes into rows (a box joins a row when its vertical centre falls inside the
    row's span), rows top to bottom, boxes in a row left to right."""
    rows: list[list] = []
    spans: list[list[float]] = []
    for line in sorted(lines, key=lambda item: float(item[0][:, 1].mean())):
        corners = line[0]
        top, bottom = float(corners[:, 1].min()), float(corners[:, 1].max())
        centre = (top + bottom) / 2
        if spans and spans[-1][0] <= centre <= spans[-1][1]:
            rows[-1].append(line)
            spans[-1] = [min(spans[-1][0], top), max(spans[-1][1], bottom)]
        else:
            rows.append([line])
            spans.append([top, bottom])
    return [sorted(row, key=lambda item: float(item[0][:, 0].min())) for row in rows]


def _unturn(corners: np.ndarray, turns: int, width: int, height: int) -> np.ndarray:
    """Points in an image turned `turns` quarter turns anticlockwise (np.rot90) -> points in
    the original `width` x `height` image."""
    x, y = corners[:, 0], corners[:, 1]
    if turns == 1:
        x, y = width - 1 - y, x
    elif turns == 2:
        x, y = width - 1 - x, height - 1 - y
    elif turns == 3:
        x, y = y, height - 1 - x
    return np.stack([x, y], axis=1)
