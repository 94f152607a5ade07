"""A trainable correction of lite's image vectors: ConSE + a small residual MLP.

ConSE (conse.py) places an image at the probability-weighted mix of its ImageNet class texts;
drawings, icons and emoji land near the wrong classes. The head learns a residual on top:

    head(x) = normalise(x + delta(x)),   delta(x) = mix * gate(x) * mlp(x)

with the MLP's last layer initialised at zero, so an untrained head is the identity and training
starts from ConSE. `mix` < 1 shrinks the learned correction towards ConSE at inference; `gate`
adds a learned sigmoid per image, so the head can leave alone the images ConSE already places
well (confident photos). Only the image side changes: texts keep the text towers' vectors.

Saved as a folder: head.safetensors (weights) + head.json (format, constructor config, digest of
the weights), read back by load_head.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from xmodal.errors import InvalidInputError, ModelLoadError

WEIGHTS_FILE = "head.safetensors"
CONFIG_FILE = "head.json"
FORMAT = "xmodal-lite-head/1"


class AlignmentHead(torch.nn.Module):
    """(n, dim) unit rows -> (n, dim) unit rows; the identity until trained.

    config (all JSON-serialisable, what save_head stores): dim, hidden, mix, gate.
    """

    def __init__(self, dim: int, hidden: int = 512, mix: float = 1.0, gate: bool = False):
        super().__init__()
        if dim < 1 or hidden < 1:
            raise InvalidInputError(f"head sizes must be positive, got dim={dim} hidden={hidden}")
        if not 0.0 <= mix <= 1.0:
            raise InvalidInputError(f"head mix must be in [0, 1], got {mix}")
        self.config = {
            "dim": int(dim),
            "hidden": int(hidden),
            "mix": float(mix),
            "gate": bool(gate),
        }
        self.mix = float(mix)
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(dim, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, dim)
        )
        # Zero last layer: delta is exactly 0, so training starts from ConSE itself.
        torch.nn.init.zeros_(self.mlp[-1].weight)
        torch.nn.init.zeros_(self.mlp[-1].bias)
        self.gate = torch.nn.Linear(dim, 1) if gate else None

    @property
    def dim(self) -> int:
        return self.config["dim"]

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        """The correction added to the unit rows x before renormalising: (n, dim)."""
        d = self.mlp(x)
        if self.gate is not None:
            d = torch.sigmoid(self.gate(x)) * d
        return self.mix * d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(x + self.delta(x), dim=-1)


def save_head(head: AlignmentHead, folder: str | Path) -> Path:
    """Write head.safetensors + head.json into `folder` (created); returns the folder."""
    from safetensors.torch import save

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {
        k: v.detach().to("cpu", torch.float32).contiguous() for k, v in head.state_dict().items()
    }
    weights = save(state)
    meta = {"format": FORMAT, "config": head.config, "blake2b": _digest(weights)}
    # Weights first, json last: a folder with a json always has the weights it describes.
    (folder / WEIGHTS_FILE).write_bytes(weights)
    (folder / CONFIG_FILE).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return folder


def load_head(folder: str | Path) -> AlignmentHead:
    """Read a head written by save_head; anything missing, damaged or mismatched raises
    ModelLoadError naming the folder and the reason."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        weights = (folder / WEIGHTS_FILE).read_bytes()
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"cannot read the lite head in {folder}: {e}") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelLoadError(f"{folder / CONFIG_FILE} is not a {FORMAT} head description")
    if meta.get("blake2b") != _digest(weights):
        raise ModelLoadError(f"{folder / WEIGHTS_FILE} is damaged (its digest does not match)")
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        head = AlignmentHead(**meta["config"])
        head.load_state_dict(load(weights), strict=True)
    except (KeyError, TypeError, InvalidInputError, RuntimeError, SafetensorError) as e:
        # RuntimeError: load_state_dict's missing/unexpected keys or wrong shapes.
        raise ModelLoadError(f"the lite head in {folder} does not fit its config: {e}") from e
    return head.eval()


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()
