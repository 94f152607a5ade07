"""Random augmented views of the image being optimised, differentiable and seeded.

Optimising one fixed view lets the image become an adversarial pattern for exactly that view;
asking many random views (crops at several scales, flips, small rotations, noise, colour jitter)
to match the prompt at once makes the features survive resampling, as in CLIPDraw and
VQGAN+CLIP's "cutouts". Every random number comes from the caller's torch.Generator on the CPU,
so a seed gives the same views on any device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augment:
    """What the views vary; the defaults are mild enough that every view still shows the
    image's content."""

    min_scale: float = 0.4  # smallest crop side, as a share of the image side
    max_rotate: float = 10.0  # degrees either way
    flip: float = 0.5  # probability of a horizontal flip
    noise: float = 0.04  # largest per-view standard deviation of added Gaussian noise
    brightness: float = 0.1
    contrast: float = 0.1
    saturation: float = 0.1

    def views(
        self, image: torch.Tensor, count: int, out: int, generator: torch.Generator
    ) -> torch.Tensor:
        """(1, 3, H, W) in [0, 1] -> (count, 3, out, out) in [0, 1]; the first view is always
        the whole image (so its score tracks the image itself), the rest are random."""
        g = generator
        device = image.device
        # Resampling far below the image's resolution aliases: shrink first, antialiased.
        limit = math.ceil(out / self.min_scale)
        if image.shape[-1] > limit:
            image = F.interpolate(
                image, size=(limit, limit), mode="bilinear", align_corners=False, antialias=True
            )
        scale = self.min_scale + (1 - self.min_scale) * torch.rand(count, generator=g)
        # The crop centre may move as far as keeps the crop inside the image.
        centre = (torch.rand(count, 2, generator=g) * 2 - 1) * (1 - scale).unsqueeze(1)
        angle = (torch.rand(count, generator=g) * 2 - 1) * math.radians(self.max_rotate)
        flip = torch.where(torch.rand(count, generator=g) < self.flip, -1.0, 1.0)
        scale[0], centre[0], angle[0], flip[0] = 1.0, 0.0, 0.0, 1.0
        cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
        theta = torch.stack(
            [
                torch.stack([cos * flip, -sin, centre[:, 0]], dim=1),
                torch.stack([sin * flip, cos, centre[:, 1]], dim=1),
            ],
            dim=1,
        ).to(device)
        grid = F.affine_grid(theta, [count, 3, out, out], align_corners=False)
        batch = image.expand(count, -1, -1, -1)
        views = F.grid_sample(
            batch, grid, mode="bilinear", padding_mode="reflection", align_corners=False
        )
        return self._jitter(views, g)

    def _jitter(self, views: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        n = views.shape[0]

        def factor(spread: float) -> torch.Tensor:
            f = 1 + (torch.rand(n, 1, 1, 1, generator=g) * 2 - 1) * spread
            f[0] = 1.0
            return f.to(views.device)

        views = views * factor(self.brightness)
        mean = views.mean(dim=(1, 2, 3), keepdim=True)
        views = (views - mean) * factor(self.contrast) + mean
        grey = views.mean(dim=1, keepdim=True)
        views = (views - grey) * factor(self.saturation) + grey
        sd = torch.rand(n, 1, 1, 1, generator=g) * self.noise
        sd[0] = 0.0
        noise = torch.randn(views.shape, generator=g) * sd
        return (views + noise.to(views.device)).clamp(0, 1)
