"""Learning rate: linear warm-up from near zero, then a cosine decay to `floor` x the peak."""

from __future__ import annotations

import math


def lr_at(step: int, *, peak: float, warmup: int, total: int, floor: float = 0.0) -> float:
    """Learning rate of optimiser step `step` (0-based) of `total`.

    Warm-up: peak * (step + 1) / warmup, so the first step is already non-zero and step
    warmup - 1 reaches the peak; then half a cosine from peak down to floor * peak at `total`.
    """
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    low = floor * peak
    return low + (peak - low) * 0.5 * (1.0 + math.cos(math.pi * progress))
