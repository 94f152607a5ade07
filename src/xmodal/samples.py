"""Real sample photos that ship inside scikit-image, scikit-learn and matplotlib.

Used by `xmodal demo`, the tests and the benchmarks: photographs nobody on the project made, each
with the label a person would give it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from xmodal.errors import MissingExtraError


@dataclass(frozen=True)
class SamplePhoto:
    name: str
    label: str
    path: Path


# name -> (label, where it comes from)
PHOTOS: dict[str, tuple[str, str]] = {
    "chelsea": ("cat", "skimage"),
    "coffee": ("cup of coffee", "skimage"),
    "astronaut": ("astronaut", "skimage"),
    "rocket": ("rocket", "skimage"),
    "camera": ("man with a camera", "skimage"),
    "stereo_motorcycle": ("motorcycle", "skimage"),
    "moon": ("moon", "skimage"),
    "coins": ("coins", "skimage"),
    "hubble_deep_field": ("galaxy", "skimage"),
    "horse": ("horse", "skimage"),
    "clock": ("clock", "skimage"),
    "china": ("temple", "sklearn"),
    "flower": ("flower", "sklearn"),
    "grace_hopper": ("woman in uniform", "matplotlib"),
}

# Labels that match none of the photos, so zero-shot has wrong answers to avoid.
DISTRACTOR_LABELS = ("dog", "car", "airplane")


def _pixels(name: str, source: str) -> np.ndarray:
    try:
        if source == "skimage":
            import skimage.data

            pixels = getattr(skimage.data, name)()
            if isinstance(pixels, tuple):  # stereo pairs: keep the left view
                pixels = pixels[0]
        elif source == "sklearn":
            from sklearn.datasets import load_sample_image

            pixels = load_sample_image(f"{name}.jpg")
        else:
            import matplotlib.cbook

            with matplotlib.cbook.get_sample_data(f"{name}.jpg") as f:
                pixels = np.asarray(Image.open(f).convert("RGB"))
    except ImportError as e:
        raise MissingExtraError("the sample photos", "samples", e.name or source) from e
    if pixels.dtype == bool:  # the horse is a silhouette mask
        pixels = np.where(pixels, 0, 255).astype(np.uint8)
    return pixels


def sample_photos(folder: str | Path, names: list[str] | None = None) -> list[SamplePhoto]:
    """Write the sample photos as PNG files into `folder` (kept if already there) and list them."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    photos = []
    for name in names or list(PHOTOS):
        label, source = PHOTOS[name]
        path = folder / f"{name}.png"
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            Image.fromarray(_pixels(name, source)).save(tmp, format="PNG")
            tmp.replace(path)
        photos.append(SamplePhoto(name, label, path))
    return photos
