"""Differentiable image towers: an encoder's image side as a torch function of the pixels.

Guided generation needs the gradient of the image embedding with respect to the pixels, so the
encoder's own numpy path (PIL resize, ONNX Runtime) cannot be used; each backend's torch modules
are reached here instead, and the resize and normalisation its transform does are redone in
torch. Pixels in, unit rows out, with the same vectors `embed_images` gives on the same square
image (tests check lite to 1e-4 cosine).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from xmodal.errors import InvalidInputError, UnsupportedModalityError
from xmodal.models.base import IMAGE, Encoder

if TYPE_CHECKING:
    from xmodal.models.lite.conse import LiteEncoder


@dataclass(frozen=True)
class ImageTower:
    """size: the square input side the network was built for; embed: (B, 3, H, W) pixels in
    [0, 1] -> (B, dim) unit rows, differentiable in the pixels; device: where it runs."""

    size: int
    embed: Callable[[torch.Tensor], torch.Tensor]
    device: torch.device
    # Whether the network's weights are shared with the encoder (and so must not be frozen or
    # moved here): the optimiser then asks autograd for the pixels' gradient only.
    shared_weights: bool = False


def differentiable_tower(encoder: Encoder, device: str | None = None) -> ImageTower:
    """The encoder's image tower in torch. device: for lite, where its (own, fresh) network
    runs; None: the encoder's device. OpenCLIP and HF towers run where their model is.

    Raises UnsupportedModalityError for models that do not see images or whose image tower is
    not torch (exported ONNX models), InvalidInputError for ones that cannot give gradients
    (int8-quantised towers, the fake test encoder)."""
    if IMAGE not in encoder.modalities:
        raise UnsupportedModalityError(
            f"model {encoder.name} does not embed images, so it cannot guide image generation: "
            "use lite, an openclip: or an hf: CLIP/SigLIP model"
        )
    from xmodal.models.exported.encoder import OnnxEncoder

    if isinstance(encoder, OnnxEncoder):
        raise UnsupportedModalityError(
            f"{encoder.name} is an exported ONNX model: ONNX Runtime gives no gradients, and "
            "generation optimises the image by them. Generate with the model it was exported "
            "from (lite, openclip:..., hf:...)"
        )
    if encoder.quantized:
        raise InvalidInputError(
            f"{encoder.name} is quantised to {encoder.quantized}: its layers give no gradients. "
            "Load it without quantize (unset XMODAL_QUANTIZE) to generate"
        )
    from xmodal.models.lite.conse import LiteEncoder

    if isinstance(encoder, LiteEncoder):
        return _lite_tower(encoder, device)
    kind = type(encoder).__module__
    if kind == "xmodal.models.openclip":
        return _clip_tower(encoder, lambda x: encoder.model.encode_image(x))
    if kind == "xmodal.models.hf":
        return _clip_tower(encoder, lambda x: _hf_features(encoder.model, x))
    raise InvalidInputError(
        f"{encoder.name} ({type(encoder).__name__}) has no differentiable image tower: "
        "generate with lite, an openclip: or an hf: CLIP/SigLIP model"
    )


def to_input(pixels: torch.Tensor, size: int, mean, std) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> the network's normalised (B, 3, size, size) input; the resize
    is antialiased so a large image's views do not alias, and stays differentiable."""
    if pixels.ndim != 4 or pixels.shape[1] != 3:
        raise InvalidInputError(f"pixels must be (batch, 3, height, width), got {pixels.shape}")
    if pixels.shape[-2:] != (size, size):
        pixels = F.interpolate(
            pixels, size=(size, size), mode="bicubic", align_corners=False, antialias=True
        )
    m = torch.tensor(mean, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
    return (pixels - m) / s


# -- lite -------------------------------------------------------------------------------------


class LiteConse(torch.nn.Module):
    """EfficientNet logits -> ConSE vectors, as LiteEncoder._encode_prepared does in numpy:
    softmax(logits / T) (top-K kept, renormalised), times each text tower's centred class
    vectors, each part unit, concatenated with equal weight, then the alignment head if any."""

    def __init__(self, encoder: LiteEncoder, net: torch.nn.Module):
        super().__init__()
        v = encoder.variant
        self.net = net
        self.temperature = float(v.temperature)
        self.top_k = v.top_k
        self.weight = float(encoder._tower_weight)
        for i, vecs in enumerate(encoder.class_vectors):
            self.register_buffer(f"classes{i}", torch.from_numpy(vecs.astype("float32")))
        self.towers = len(encoder.class_vectors)
        self.head = encoder.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = torch.softmax(self.net(x).float() / self.temperature, dim=1)
        if self.top_k is not None and self.top_k < p.shape[1]:
            keep = torch.zeros_like(p).scatter(1, p.topk(self.top_k, dim=1).indices, 1.0)
            p = p * keep
        parts = [F.normalize(p @ getattr(self, f"classes{i}"), dim=1) for i in range(self.towers)]
        raw = self.weight * torch.cat(parts, dim=1)
        if self.head is not None:
            # As _encode_prepared: raw + |raw| * delta(unit raw).
            raw = raw + raw.norm(dim=1, keepdim=True) * self.head.delta(F.normalize(raw, dim=1))
        return F.normalize(raw, dim=1)


def _lite_tower(encoder: LiteEncoder, device: str | None) -> ImageTower:
    from xmodal.models.device import resolve_device
    from xmodal.models.lite.runtime import _torch_net
    from xmodal.models.lite.spec import IMAGE_TOWERS

    spec = IMAGE_TOWERS[encoder.variant.image_tower]
    where = torch.device(resolve_device(device) if device else encoder.device)
    # A network of our own (the encoder's may be an ONNX graph): frozen, gradients reach the
    # pixels only.
    model = LiteConse(encoder, _torch_net(spec)).eval().to(where)
    model.requires_grad_(False)
    # NHWC, as the encoder's torch runner: oneDNN's depthwise kernels are faster in it.
    model.net.to(memory_format=torch.channels_last)
    mean, std = encoder.transform.mean, encoder.transform.std

    def embed(pixels: torch.Tensor) -> torch.Tensor:
        x = to_input(pixels.to(where), spec.size, mean, std)
        return model(x.contiguous(memory_format=torch.channels_last))

    return ImageTower(spec.size, embed, where)


# -- OpenCLIP and Hugging Face ------------------------------------------------------------------


def _clip_tower(encoder: Encoder, forward: Callable[[torch.Tensor], torch.Tensor]) -> ImageTower:
    spec = encoder._pixels.spec  # hub.image_batcher's record of the checkpoint's transform
    size, mean, std = int(spec["size"]), spec["mean"], spec["std"]
    where = torch.device(encoder.device)
    dtype = next(encoder.model.parameters()).dtype

    def embed(pixels: torch.Tensor) -> torch.Tensor:
        x = to_input(pixels.to(where, torch.float32), size, mean, std).to(dtype)
        return F.normalize(forward(x).float(), dim=1)

    return ImageTower(size, embed, where, shared_weights=True)


def _hf_features(model, pixels: torch.Tensor) -> torch.Tensor:
    out = model.get_image_features(pixel_values=pixels)
    # transformers 5 returns a model output holding the projected features in pooler_output.
    return out if isinstance(out, torch.Tensor) else out.pooler_output
