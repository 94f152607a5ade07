"""Where a model runs: the `device` option, XMODAL_DEVICE and `--device`, parsed in one place.

  cpu       the default
  cuda      the current CUDA GPU; cuda:N the N-th
  mps       Apple's Metal GPU
  auto      cuda when there is one, else mps, else cpu

`resolve_device` turns a spec into a canonical name ("cpu", "cuda:0", "mps") and raises
DeviceError for a device this machine or this torch build cannot use, before any weights load.
Inference on CUDA runs in float16 where the backend allows (`half_precision`); vectors come back
float32 either way.
"""

from __future__ import annotations

import re
from contextlib import nullcontext

from xmodal.errors import DeviceError, InvalidInputError

DEVICES = ("cpu", "cuda", "cuda:N", "mps", "auto")
_SPEC = re.compile(r"^(cpu|mps|auto|cuda(?::(\d+))?)$")


def default_device() -> str:
    """The configured device: XMODAL_DEVICE, else cpu."""
    from xmodal.config import get_settings

    return get_settings().device


def parse_device(spec: str | None) -> tuple[str, int | None]:
    """'cuda:1' -> ('cuda', 1); 'cpu' -> ('cpu', None). Syntax only: nothing is probed."""
    text = (default_device() if spec is None else str(spec)).strip().lower()
    match = _SPEC.match(text)
    if match is None:
        source = " (XMODAL_DEVICE)" if spec is None else ""
        raise InvalidInputError(f"unknown device {text!r}{source}: use one of {', '.join(DEVICES)}")
    kind = text.partition(":")[0]
    return kind, None if match.group(2) is None else int(match.group(2))


def resolve_device(spec: str | None = None) -> str:
    """A usable device's canonical name for `spec` (None: the configured one), or DeviceError."""
    kind, index = parse_device(spec)
    text = kind if index is None else f"{kind}:{index}"
    if kind == "cpu":
        return "cpu"
    import torch

    if kind == "auto":
        if torch.cuda.is_available():
            return f"cuda:{torch.cuda.current_device()}"
        return "mps" if _mps_available(torch) else "cpu"
    if kind == "mps":
        if not _mps_available(torch):
            raise DeviceError(
                "device 'mps' asked for, but Apple's Metal GPU is not usable here "
                "(macOS on Apple silicon with a torch build that has MPS): use cpu or auto"
            )
        return "mps"
    if not torch.cuda.is_available():
        why = (
            "this torch build has no CUDA support"
            if torch.version.cuda is None
            else "no CUDA GPU is visible (driver, CUDA_VISIBLE_DEVICES)"
        )
        raise DeviceError(f"device {text!r} asked for, but {why}: use cpu or auto")
    count = torch.cuda.device_count()
    if index is None:
        index = torch.cuda.current_device()
    elif index >= count:
        raise DeviceError(
            f"device {text!r} asked for, but this machine has {count} CUDA GPU(s): "
            f"use cuda:0{f' to cuda:{count - 1}' if count > 1 else ''}"
        )
    return f"cuda:{index}"


def torch_device(spec: str | None = None):
    """The torch.device for `spec`, validated as resolve_device does."""
    import torch

    return torch.device(resolve_device(spec))


def half_precision(device) -> bool:
    """Whether inference on `device` (a torch.device or a name) runs in float16: on CUDA only,
    where float16 tensor cores double throughput; mps and cpu stay float32."""
    return str(device).startswith("cuda")


def autocast(device):
    """The context an encoder's forward pass runs in: float16 autocast on CUDA, else nothing.

    Autocast keeps layer norms and softmax in float32, so vectors stay within ~1e-3 of float32.
    """
    if not half_precision(device):
        return nullcontext()
    import torch

    return torch.autocast("cuda", dtype=torch.float16)


def _mps_available(torch) -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())
