"""Models exported by `xmodal export onnx`, loaded as onnx:DIR (see card.py for the folder).

Importing this package is cheap: no onnxruntime until a model loads.
"""

from __future__ import annotations

from pathlib import Path

from xmodal.errors import InvalidInputError, ModelNotFoundError
from xmodal.models.exported.card import CARD
from xmodal.models.registry import ModelInfo


def load(
    arg: str,
    *,
    device: str = "cpu",
    num_threads: int | None = None,
    batch_size: int | None = None,
    **options,
):
    """`arg` follows 'onnx:': a folder written by `xmodal export onnx`."""
    from xmodal.models.exported.encoder import OnnxEncoder

    if any(v is not None for v in options.values()):
        fixed = ", ".join(k for k, v in options.items() if v is not None)
        raise InvalidInputError(
            f"onnx:{arg}: {fixed} cannot be changed on an exported model (fixed at export)"
        )
    folder = Path(arg).expanduser()
    if not folder.is_dir():
        raise ModelNotFoundError(
            f"onnx:{arg}: no such folder; make one with `xmodal export onnx --model M --out {arg}`"
        )
    return OnnxEncoder(folder, num_threads=num_threads, batch_size=batch_size, device=device)


def list_models() -> list[ModelInfo]:
    return [
        ModelInfo("onnx:path/to/folder", None, True, f"exported by `xmodal export onnx` ({CARD})")
    ]
