"""What to train and how: the hyper-parameters of one run, as data (recorded in the model card)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from xmodal.errors import InvalidInputError

MODES = ("heads", "blocks", "all")
TOWERS = ("image", "text", "both")
# Peak learning rate per mode when none is given: new or small heads move fast, while a whole
# pretrained network forgets what it knew at anything much above 1e-5.
DEFAULT_LR = {"heads": 1e-3, "blocks": 1e-4, "all": 1e-5}
# Early stopping watches validation text->image recall@5 (what a search user feels), with
# mean_recall (every recall@k, both directions) breaking ties on small validation sets.
MONITOR = ("text_to_image", "recall@5")


@dataclass(frozen=True)
class TrainMode:
    """heads: projection heads (+ temperature) only; blocks: also the last `blocks` blocks of
    `towers`; all: every weight."""

    kind: str = "heads"
    blocks: int = 0
    towers: str = "both"

    def __post_init__(self) -> None:
        if self.kind not in MODES:
            raise InvalidInputError(f"unknown mode {self.kind!r}: use one of {', '.join(MODES)}")
        if self.towers not in TOWERS:
            raise InvalidInputError(f"unknown tower {self.towers!r}: use {', '.join(TOWERS)}")
        if self.kind == "blocks" and self.blocks < 1:
            raise InvalidInputError("mode blocks needs the number of blocks to train (>= 1)")

    @property
    def tower_list(self) -> tuple[str, ...]:
        return ("image", "text") if self.towers == "both" else (self.towers,)

    def describe(self, heads: str = "projection heads") -> str:
        if self.kind == "blocks":
            return f"{heads} + last {self.blocks} block(s) of the {self.towers} tower(s)"
        return {"heads": heads, "all": "every weight"}[self.kind]


@dataclass(frozen=True)
class TrainConfig:
    mode: TrainMode = TrainMode()
    epochs: int = 10
    batch_size: int = 64  # pairs per forward pass: each one's in-batch negatives
    accum: int = 1  # forward passes per optimiser step (effective batch = batch_size * accum)
    lr: float | None = None  # peak learning rate; None: DEFAULT_LR[mode]
    weight_decay: float = 0.1  # AdamW, on matrices only (not biases, norms, temperature)
    warmup: float = 0.1  # share of the optimiser steps spent warming up
    min_lr: float = 0.0  # the cosine ends at min_lr * lr
    clip_grad: float = 1.0  # max global gradient norm
    val_fraction: float = 0.2
    patience: int = 3  # epochs without a better validation score before stopping
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "accum"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise InvalidInputError("batch_size must be at least 2: a pair needs negatives")
        if self.lr is not None and not self.lr > 0:
            raise InvalidInputError(f"lr must be positive, got {self.lr}")
        if not 0 <= self.warmup < 1:
            raise InvalidInputError(f"warmup is a share of the steps in [0, 1), got {self.warmup}")
        if not 0 < self.val_fraction < 1:
            raise InvalidInputError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.patience < 1:
            raise InvalidInputError(f"patience must be at least 1, got {self.patience}")
        if self.clip_grad <= 0 or self.weight_decay < 0 or not 0 <= self.min_lr <= 1:
            raise InvalidInputError("clip_grad > 0, weight_decay >= 0 and 0 <= min_lr <= 1")

    @property
    def peak_lr(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.mode.kind]

    def to_dict(self) -> dict:
        return {**asdict(self), "lr": self.peak_lr}

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        return cls(**{**data, "mode": TrainMode(**data["mode"])})
