"""Real images (with captions) that an export calibrates int8 on and checks parity against.

A user's own folder is best (`--gallery DIR`: int8 ranges then come from their kind of pictures);
without one, the clip art of openclipart-png and the sample photos, where installed. Calibration
and measurement use different images, so parity is not measured on what set the ranges.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from xmodal.errors import ExportError, MissingDataError, MissingExtraError

GALLERY_SIZE = 200
CALIBRATION_SIZE = 64


@dataclass(frozen=True)
class Gallery:
    images: list[Path]  # measured on
    captions: list[str]  # text queries for retrieval overlap (captions of those images)
    calibration: list[Path]  # int8 activation ranges come from these


def default_gallery() -> Gallery:
    """Clip art (test captions to measure, train captions to calibrate) plus the sample photos."""
    from xmodal.samples import clipart_images

    measure, calibrate, captions = [], [], []
    try:
        test = clipart_images("test")
        train = clipart_images("train")
        step = max(1, len(test) // GALLERY_SIZE)
        for item in test[::step][:GALLERY_SIZE]:
            measure.append(item.path)
            captions.append(item.caption)
        step = max(1, len(train) // CALIBRATION_SIZE)
        calibrate += [x.path for x in train[::step][:CALIBRATION_SIZE]]
    except MissingDataError:
        pass
    photos = _photos()
    # Photos on both sides, alternating: a model meant for photos must be calibrated on some.
    measure += [p.path for p in photos[::2]]
    captions += [p.label for p in photos[::2]]
    calibrate += [p.path for p in photos[1::2]]
    if len(measure) < 20 or not calibrate:
        raise ExportError(
            "no real images to check the export against: install the Debian package "
            "openclipart-png or `pip install 'xmodal[samples]'`, or give --gallery DIR "
            "(a folder of your own images)"
        )
    return Gallery(measure, _unique(captions), calibrate)


def folder_gallery(folder: str | Path) -> Gallery:
    """Every other image of `folder` (sorted, recursive) to measure, the rest to calibrate;
    captions from the file names."""
    from xmodal.images import IMAGE_EXTENSIONS

    root = Path(folder).expanduser()
    if not root.is_dir():
        raise ExportError(f"--gallery {folder}: not a folder")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if len(files) < 40:
        raise ExportError(
            f"--gallery {folder} holds {len(files)} images; give at least 40 (a few hundred "
            "measure int8 parity well)"
        )
    files = files[: 2 * GALLERY_SIZE]
    measure, calibrate = files[::2], files[1::2][:CALIBRATION_SIZE]
    captions = [_caption(p.stem) for p in measure]
    return Gallery(measure, _unique([c for c in captions if c]) or ["a picture"], calibrate)


def _photos():
    from xmodal.samples import sample_photos

    try:
        folder = Path(tempfile.gettempdir()) / "xmodal-sample-photos"
        return sample_photos(folder)
    except (MissingExtraError, MissingDataError, ImportError):
        return []


def _caption(stem: str) -> str:
    return " ".join(w for w in re.split(r"[^A-Za-z]+", stem) if len(w) > 2).lower()


def _unique(texts: list[str]) -> list[str]:
    return list(dict.fromkeys(texts))
