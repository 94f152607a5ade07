"""The model input transform: PIL image -> normalised float32 CHW array, with PIL and numpy only.

"crop" reproduces open_clip's eval transform (torchvision Resize(size) + CenterCrop(size) +
ToTensor + Normalize) to within float rounding, so a backend can use it in place of open_clip's own
and the `lite` model does not need torchvision. "pad" reproduces open_clip's "longest" mode
(ResizeKeepRatio(longest=1) + CenterCropOrPad) with `pad_color` as the fill.

Both are exact on the image they are given. Encoders normally get large JPEGs decoded at a
reduced scale (`decode_size`, see images.load_image's min_side), which changes the pixels the
resize starts from a little; `full_decode=True` asks for the full-size decode, for a backend
whose vectors must equal open_clip's bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from xmodal.errors import InvalidInputError
from xmodal.images import load_image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

RESIZE_MODES = ("crop", "pad")


@dataclass(frozen=True)
class ImageTransform:
    """Resize, crop or pad to `size` x `size`, scale to [0, 1], then (x - mean) / std per channel.

    resize_mode:
      "crop": shorter side -> size (bicubic), then a centred square crop. What CLIP models were
              trained on; the edges of wide or tall images are cut off.
      "pad":  longer side -> size (bicubic), then centred on a `pad_color` square, so nothing is
              cut off.
    pad_color defaults to white, the same colour `load_image` composites transparency onto: an
    icon on a transparent background then gets one uniform white margin rather than a white box
    inside coloured bars. Pass the checkpoint's own fill colour where it has one (open_clip's
    preprocess config `fill_color`, 0 = black).
    """

    size: int
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    resize_mode: str = "crop"
    pad_color: tuple[int, int, int] = (255, 255, 255)
    full_decode: bool = False

    @property
    def decode_size(self) -> int | None:
        """The shortest sides a decoder may scale an image down to before this transform
        (both at least `size`: enough for a crop, more than enough for a pad), or None for the
        full image."""
        return None if self.full_decode else self.size

    def __post_init__(self) -> None:
        if self.resize_mode not in RESIZE_MODES:
            raise InvalidInputError(
                f"unknown resize_mode {self.resize_mode!r}: use one of {', '.join(RESIZE_MODES)}"
            )
        if self.size < 1:
            raise InvalidInputError(f"transform size must be at least 1, got {self.size}")

    def __call__(self, image: Image.Image) -> np.ndarray:
        """One image -> float32 array (3, size, size)."""
        if image.mode != "RGB":
            image = load_image(image)
        if self.resize_mode == "crop":
            square = _resize_shorter_and_crop(image, self.size)
        else:
            square = _resize_longer_and_pad(image, self.size, self.pad_color)
        return self._normalise(square)

    def batch(self, images: list[Image.Image]) -> np.ndarray:
        """Images -> float32 array (n, 3, size, size)."""
        out = np.empty((len(images), 3, self.size, self.size), dtype=np.float32)
        for i, image in enumerate(images):
            out[i] = self(image)
        return out

    def _normalise(self, image: Image.Image) -> np.ndarray:
        # Same float32 operations, in the same order, as ToTensor (/255) then Normalize.
        pixels = np.asarray(image, dtype=np.float32) / np.float32(255)
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        return np.ascontiguousarray(((pixels - mean) / std).transpose(2, 0, 1))


def _resize_shorter_and_crop(image: Image.Image, size: int) -> Image.Image:
    w, h = image.size
    # torchvision Resize(int): the shorter side becomes `size`, the longer one is truncated
    # (int(), not round()), so it is never below `size` and the crop never needs padding.
    if w <= h:
        new_w, new_h = size, int(size * h / w)
    else:
        new_w, new_h = int(size * w / h), size
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    # torchvision CenterCrop offsets use Python's round(), which rounds halves to even:
    # an excess of 3 pixels puts 2 on the left, an excess of 5 also puts 2 there.
    left = round((new_w - size) / 2)
    top = round((new_h - size) / 2)
    return image.crop((left, top, left + size, top + size))


def _resize_longer_and_pad(
    image: Image.Image, size: int, color: tuple[int, int, int]
) -> Image.Image:
    w, h = image.size
    # open_clip ResizeKeepRatio(longest=1): both sides divided by the larger ratio and round()ed;
    # at least 1 pixel so extreme panoramas still resize.
    ratio = max(w / size, h / size)
    new_w, new_h = max(1, round(w / ratio)), max(1, round(h / ratio))
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    # CenterCropOrPad: the odd pixel of padding goes right / bottom.
    canvas = Image.new("RGB", (size, size), tuple(color))
    canvas.paste(image, ((size - new_w) // 2, (size - new_h) // 2))
    return canvas
