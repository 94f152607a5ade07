"""Image parametrisations ("drawers"): trainable parameters -> a (1, 3, H, W) image in [0, 1].

pixels: the image lives in a decorrelated colour space and a Fourier basis whose coefficients
are scaled by 1/frequency (Olah et al., "Feature Visualization", Distill 2017; Lucid's
fft_image and to_valid_rgb). Equal steps then change every frequency about equally in the
image, instead of the optimiser mostly learning high-frequency noise that fools the network.

strokes: N soft quadratic Bézier strokes (end and control points, width, RGB, alpha), each
rasterised by its distance to a few straight pieces with a sigmoid edge and composited over a
background in order, in the spirit of CLIPDraw (Frans et al. 2021). Pure torch: the gradient
reaches every stroke's geometry through the soft edge.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from xmodal.errors import InvalidInputError

DRAWERS = ("pixels", "strokes")

# Lucid's colour correlation of ImageNet (square root of its covariance, by SVD); columns scaled
# so the largest has unit norm.
_COLOUR = torch.tensor(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=torch.float32
)
_COLOUR = _COLOUR / _COLOUR.norm(dim=0).max()
# Spread of the first random Fourier coefficients (Lucid's sd): a faint grey-ish start.
_INIT_SD = 0.01
# The inverse transform of an init image keeps it off sigmoid's flat ends.
_INIT_EPS = 0.02


class Drawer(torch.nn.Module):
    """forward() -> (1, 3, size, size) image in [0, 1]; parameters() are what the optimiser
    changes; default_lr suits Adam on them."""

    default_lr: float = 0.05

    def image(self) -> Image.Image:
        """The current image as 8-bit RGB."""
        with torch.no_grad():
            return to_pil(self())


def to_pil(pixels: torch.Tensor) -> Image.Image:
    array = pixels.detach()[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(np.round(array * 255).astype(np.uint8), "RGB")


def from_pil(image: Image.Image, size: int) -> torch.Tensor:
    """An RGB image resized to size x size (bicubic, centre-cropped to a square) -> (1, 3, s, s)."""
    from xmodal.models.preprocess import ImageTransform

    square = ImageTransform(size, (0.0,) * 3, (1.0,) * 3, resize_mode="crop")(image)
    return torch.from_numpy(square).unsqueeze(0).clamp(0, 1)


class FourierPixels(Drawer):
    """Lucid's fft_image + to_valid_rgb, with an optional init image set by the inverse
    transform (so the start is that image to within 8-bit rounding)."""

    default_lr = 0.05

    def __init__(
        self,
        size: int,
        generator: torch.Generator,
        init: torch.Tensor | None = None,
        decay: float = 1.0,
    ):
        super().__init__()
        self.size = size
        fy = torch.fft.fftfreq(size)[:, None]
        fx = torch.fft.rfftfreq(size)[None, :]
        freqs = torch.sqrt(fx * fx + fy * fy)
        # 1/f, the lowest frequency capped at one cycle per image; * size keeps the pixel
        # amplitudes independent of the size, as Lucid's normalisation does.
        scale = 1.0 / torch.clamp(freqs, min=1.0 / size) ** decay * size
        self.register_buffer("scale", scale.float())
        shape = (3, size, size // 2 + 1, 2)
        if init is None:
            spectrum = torch.randn(shape, generator=generator) * _INIT_SD
        else:
            spectrum = self._inverse(init)
        self.spectrum = torch.nn.Parameter(spectrum)

    def _colour_logits(self) -> torch.Tensor:
        """(1, 3, H, W) decorrelated colour values before the sigmoid."""
        coeffs = torch.view_as_complex(self.spectrum) * self.scale
        decorrelated = torch.fft.irfft2(coeffs, s=(self.size, self.size)) / 4.0
        return torch.einsum("ij,jhw->ihw", _COLOUR.to(decorrelated), decorrelated).unsqueeze(0)

    def forward(self) -> torch.Tensor:
        return torch.sigmoid(self._colour_logits())

    def _inverse(self, image: torch.Tensor) -> torch.Tensor:
        logits = torch.logit(image[0].clamp(_INIT_EPS, 1 - _INIT_EPS))
        decorrelated = torch.einsum("ij,jhw->ihw", torch.linalg.inv(_COLOUR), logits) * 4.0
        coeffs = torch.fft.rfft2(decorrelated) / self.scale
        return torch.view_as_real(coeffs).contiguous().float()


class Strokes(Drawer):
    """N soft quadratic Bézier strokes over a background colour (or a fixed init image)."""

    default_lr = 0.02
    pieces = 4  # straight pieces per curve: enough to look curved at these widths

    def __init__(
        self,
        size: int,
        generator: torch.Generator,
        count: int = 64,
        init: torch.Tensor | None = None,
    ):
        super().__init__()
        self.size = size
        g = generator
        start = torch.rand(count, 1, 2, generator=g) * 1.2 - 0.1  # a little past the edges too
        bend = (torch.rand(count, 2, 2, generator=g) - 0.5) * 0.3
        # Points in units of the image side, (x, y), 0..1 across.
        self.points = torch.nn.Parameter(torch.cat([start, start + bend], dim=1))
        # Widths 1.5-5% of the side, through softplus so they stay positive.
        width = 0.015 + torch.rand(count, generator=g) * 0.035
        self.width = torch.nn.Parameter(torch.log(torch.expm1(width * size)))
        self.colour = torch.nn.Parameter(torch.randn(count, 3, generator=g) * 1.5)
        self.alpha = torch.nn.Parameter(torch.full((count,), 1.0))
        if init is None:
            self.background = torch.nn.Parameter(torch.full((3,), 2.0))  # near white
            self.register_buffer("fixed_background", None)
        else:
            self.register_parameter("background", None)
            self.register_buffer("fixed_background", init[0].clone())
        pos = (torch.arange(size, dtype=torch.float32) + 0.5) / size
        yy, xx = torch.meshgrid(pos, pos, indexing="ij")
        self.register_buffer("grid", torch.stack([xx, yy], dim=-1).reshape(1, -1, 2))

    def _curve(self) -> torch.Tensor:
        """(N, pieces + 1, 2) points along each quadratic Bézier."""
        t = torch.linspace(0, 1, self.pieces + 1, device=self.points.device).view(1, -1, 1)
        p0, p1, p2 = self.points[:, 0:1], self.points[:, 1:2], self.points[:, 2:3]
        return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2

    def _coverage(self) -> torch.Tensor:
        """(N, H*W) soft coverage in [0, 1]: a sigmoid of (half width - distance) in pixels."""
        # Pixels from the image centre: smaller magnitudes keep float32's cancellation in the
        # expanded squared distance small (coverage within 0.004 of the direct formula at 224).
        curve = (self._curve() - 0.5) * self.size
        n, pieces = curve.shape[0], curve.shape[1] - 1
        a = curve[:, :-1].reshape(-1, 2)  # (N*P, 2) piece starts
        ab = curve[:, 1:].reshape(-1, 2) - a  # piece directions
        p = (self.grid[0] - 0.5) * self.size  # (HW, 2)
        # Distance to each piece from dot products only, (N*P, HW) scalars throughout: ~1.5x
        # faster (forward + backward) than (N, P, HW, 2) difference vectors. pa = p - a.
        pa_ab = ab @ p.T - (a * ab).sum(1, keepdim=True)
        pa2 = (p * p).sum(1) - 2 * (a @ p.T) + (a * a).sum(1, keepdim=True)
        ab2 = (ab * ab).sum(1, keepdim=True).clamp(min=1e-6)
        t = (pa_ab / ab2).clamp(0, 1)
        dist2 = (pa2 - t * (2 * pa_ab - t * ab2)).clamp(min=0)
        dist2 = dist2.view(n, pieces, -1).min(dim=1).values  # (N, HW)
        dist = torch.sqrt(dist2 + 1e-6)
        half = F.softplus(self.width).unsqueeze(1) / 2
        return torch.sigmoid(half - dist)  # a soft edge one pixel wide

    def forward(self) -> torch.Tensor:
        size = self.size
        cover = torch.sigmoid(self.alpha).unsqueeze(1) * self._coverage()  # (N, HW)
        keep = 1 - cover
        # Stroke i is seen through every later stroke: weight_i = cover_i * prod_{j>i} keep_j.
        later = torch.flip(torch.cumprod(torch.flip(keep, [0]), 0), [0])
        through = torch.cat([later[1:], torch.ones_like(later[:1])], dim=0)
        weights = cover * through  # (N, HW)
        colour = torch.sigmoid(self.colour)  # (N, 3)
        ink = weights.transpose(0, 1) @ colour  # (HW, 3)
        if self.fixed_background is None:
            back = torch.sigmoid(self.background).view(1, 3).expand(size * size, 3)
        else:
            back = self.fixed_background.reshape(3, -1).transpose(0, 1)
        image = ink + later[0].unsqueeze(1) * back
        return image.transpose(0, 1).reshape(1, 3, size, size)


def make_drawer(
    kind: str,
    size: int,
    generator: torch.Generator,
    *,
    init: Image.Image | None = None,
    strokes: int = 64,
) -> Drawer:
    if kind not in DRAWERS:
        raise InvalidInputError(f"unknown drawer {kind!r}: use one of {', '.join(DRAWERS)}")
    start = None if init is None else from_pil(init, size)
    if kind == "pixels":
        return FourierPixels(size, generator, start)
    return Strokes(size, generator, strokes, start)


__all__ = ["DRAWERS", "Drawer", "FourierPixels", "Strokes", "from_pil", "make_drawer", "to_pil"]
