"""Dynamic int8 for the torch backends: the `quantize="int8"` load option.

The nn.Linear layers of the torch modules an encoder runs become dynamically quantised ones
(int8 weights per output channel, activations quantised per batch), on the CPU only: torch's
int8 kernels are CPU kernels (fbgemm/oneDNN on x86, qnnpack on ARM). The fp32 model first
embeds real probe texts and images; then every layer goes to int8 if the vectors stay within
INT8_MIN_COSINE of fp32 (per-row cosine), else each kind of layer (the same layer in every
block) is added only if they still do: MiniLM's feed-forward layers, whose activations have
outliers, stay fp32 that way. Nothing passing is a ModelLoadError naming the cosine. Layers
are swapped in place, and the fp32 ones are dropped once the choice is made.

Which modules that is, per backend:
  openclip  the whole open_clip model (attention's fused in-projection is a bare weight and
            its out-projection a type torch keeps in float, so those stay fp32)
  hf        the whole transformers CLIP / SigLIP model
  lite      the MiniLM text tower where it runs on torch and the image tower's classifier
            where the image tower runs on torch; ONNX Runtime towers and e5 (its own 4-bit C
            engine) are left as they are, and the report says so

torch 2.14 still ships torch.ao.quantization.quantize_dynamic but marks it deprecated in favour
of torchao, a separate package; until torch itself offers a successor this module uses it and
silences only its deprecation notices.
"""

from __future__ import annotations

import importlib.util
import re
import tempfile
import warnings
from dataclasses import dataclass, field

from xmodal.errors import DeviceError, InvalidInputError, ModelLoadError
from xmodal.images import load_image
from xmodal.models.base import IMAGE, TEXT, Encoder
from xmodal.models.parity import INT8_MIN_COSINE, Parity, measure

QUANTIZE_OPTIONS = ("int8",)
# A block's index in a layer's qualified name: encoder.layer.3.output.dense -> a kind of layer.
_BLOCK_INDEX = re.compile(r"\.\d+(?=\.|$)")
_PROBE_BATCH = 4

# Real captions of many lengths and scripts: single words, sentences, a caption long enough to
# be cut at every model's token limit, Hindi and other scripts.
PROBE_TEXTS = (
    "cat",
    "a cat",
    "a photo of a dog",
    "a cup of coffee on a wooden table",
    "an astronaut in a white suit standing in front of the American flag",
    "a red motorcycle parked on the street next to a stone wall in the afternoon sun",
    "the moon",
    "a pile of old coins of different sizes",
    "a rocket on the launch pad before take-off, surrounded by towers and smoke",
    "कुत्ता",
    "एक बिल्ली सोफ़े पर सो रही है",
    "समुद्र तट पर सूर्यास्त के समय दौड़ता हुआ एक कुत्ता",
    "Ein Hund spielt im Schnee.",
    "猫がソファで寝ている",
    "crane: a large long-necked wading bird; crane: a machine that lifts heavy objects " * 12,
)


@dataclass(frozen=True)
class QuantizeReport:
    """What quantize_encoder changed and how far the vectors moved."""

    parities: tuple[Parity, ...]
    quantized: tuple[str, ...]  # qualified names of the Linear layers now int8
    kept: tuple[str, ...] = field(default=())  # what stayed as it was, and why

    def parity(self, side: str) -> Parity | None:
        return next((p for p in self.parities if p.side == side), None)

    def describe(self) -> str:
        lines = [f"int8: {len(self.quantized)} linear layer(s) quantised"]
        lines += [p.describe() for p in self.parities]
        lines += [f"kept: {why}" for why in self.kept]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "quantized": list(self.quantized),
            "parity": [p.to_dict() for p in self.parities],
            "kept": list(self.kept),
        }


def check_quantize(quantize: str | None, device: str | object = "cpu") -> str | None:
    """The option's value if usable ("int8" or None), before any weights load; else
    InvalidInputError (an unknown value) or DeviceError (int8 asked for off the CPU)."""
    if quantize is None:
        return None
    if quantize not in QUANTIZE_OPTIONS:
        raise InvalidInputError(
            f"unknown quantize option {quantize!r}: use one of {', '.join(QUANTIZE_OPTIONS)} "
            "(or none for fp32)"
        )
    _require_cpu(str(device))
    return quantize


def apply_option(encoder: Encoder, quantize: str | None) -> QuantizeReport | None:
    """What a backend's load() does with its `quantize` option, once the encoder exists."""
    if check_quantize(quantize, getattr(encoder, "device", "cpu")) is None:
        return None
    report = quantize_encoder(encoder)
    encoder.quantized = quantize
    encoder.quantize_report = report
    return report


def quantize_encoder(
    encoder: Encoder,
    *,
    probe_images=None,
    probe_texts=None,
    min_cosine: float = INT8_MIN_COSINE,
) -> QuantizeReport:
    """Quantise the Linear layers of `encoder`'s torch modules to dynamic int8, in place.

    probe_texts / probe_images: real inputs the parity check embeds with fp32 and int8 (None:
    PROBE_TEXTS, and scikit-image's sample photos when scikit-image is installed).

    All Linear layers go to int8 when the vectors stay within `min_cosine` of fp32 (per-row
    cosine, every measured side). Where they do not (activation outliers, as in BERT's feed-
    forward layers, make per-tensor activation scales coarse), kinds of layer (the same layer
    in every block) are added one at a time, and a kind stays int8 only if the vectors still
    pass with it. ModelLoadError, naming the best cosine measured, when no kind passes; the
    encoder is then back in fp32 and still usable.
    """
    _require_cpu(str(getattr(encoder, "device", "cpu")))
    texts = list(PROBE_TEXTS if probe_texts is None else probe_texts)
    kept: list[str] = []
    images = probe_images
    if images is None and IMAGE in encoder.modalities:
        images = _sample_photos()
        if images is None:
            kept.append("image side not measured: scikit-image (its sample photos) is missing")
    modules = _torch_modules(encoder, kept)
    layers = _Layers(modules)
    if not layers.names:
        raise ModelLoadError(
            f"{encoder.name}: nothing to quantise to int8, no Linear layer runs on torch "
            f"({'; '.join(kept) or 'not a torch backend'})"
        )
    # Only the sides whose modules change are measured; the others are the same bits.
    sides = frozenset().union(*(served for _, _, served in modules))
    probes = {}
    if TEXT in sides and TEXT in encoder.modalities and texts:
        # Short texts batched together, so one long caption pads only its own small batch.
        by_length = sorted(texts, key=len)
        probes[TEXT] = lambda: encoder.embed_texts(by_length, batch_size=_PROBE_BATCH)
    if IMAGE in sides and IMAGE in encoder.modalities and images:
        # Decoded and resized once: the search below may embed them many times.
        prepared = [encoder.prepare_image(load_image(im)) for im in images]
        probes[IMAGE] = lambda: encoder.embed_prepared(prepared)
    if not probes:
        raise InvalidInputError("int8 parity needs real probe texts or images; none were given")
    reference = {side: embed() for side, embed in probes.items()}
    measured = {(side, frozenset()): measure(side, v, v) for side, v in reference.items()}

    def attempt(names) -> tuple[tuple[Parity, ...], float]:
        layers.set_int8(names)
        parities = []
        for side, embed in probes.items():
            # A side is embedded again only when the int8 layers it runs through changed.
            key = (side, frozenset(n for n in names if side in layers.sides[n]))
            if key not in measured:
                measured[key] = measure(side, reference[side], embed())
            parities.append(measured[key])
        # NaN (a broken layer) compares false, so it scores as a failure.
        worst = min((p.min_cosine for p in parities), default=1.0)
        return tuple(parities), worst if worst == worst else -1.0

    parities, worst = attempt(layers.names)
    best = worst
    chosen = set(layers.names)
    if worst < min_cosine:
        # Kinds of layer added one at a time, in model order; one stays int8 only if the
        # vectors still pass with it and those kept before it.
        chosen, parities = set(), ()
        for kind, names in layers.kinds.items():
            trial, worst = attempt(chosen | names)
            if worst >= min_cosine:
                chosen |= names
                parities = trial
            else:
                if not chosen:  # so far each kind is tried alone
                    best = max(best, worst)
                kept.append(f"fp32 kept for {kind}: in int8 it gives cosine {worst:.5f}")
        layers.set_int8(chosen)
    layers.release()  # the fp32 weights of int8 layers are dropped here
    if not chosen:
        raise ModelLoadError(
            f"{encoder.name} with dynamic int8 moves vectors too far from fp32: the best "
            f"per-row cosine measured on {len(texts)} real texts and {len(images or ())} real "
            f"images is {best:.5f}, below {min_cosine} (all layers int8, then each kind of "
            "layer alone); load it without quantize"
        )
    return QuantizeReport(parities, tuple(n for n in layers.names if n in chosen), tuple(kept))


# -- which modules ----------------------------------------------------------------------------


def _torch_modules(encoder: Encoder, kept: list[str]) -> list[tuple[str, object, frozenset]]:
    """(name, torch module, sides it serves) for each module to quantise; notes go to `kept`."""
    from xmodal.models.lite.conse import LiteEncoder

    if isinstance(encoder, LiteEncoder):
        return _lite_modules(encoder, kept)
    model = getattr(encoder, "model", None)
    if model is None:
        kept.append(f"{type(encoder).__name__} holds no torch model")
        return []
    # One model holds both towers: both sides change.
    return [("model", model, frozenset(encoder.modalities))]


def _lite_modules(encoder, kept: list[str]) -> list[tuple[str, object, frozenset]]:
    from xmodal.models.lite.runtime import TorchRunner

    found = []
    for tower in encoder.text_towers:
        inner = getattr(getattr(tower, "_embed", None), "model", None)
        if getattr(tower, "runtime", None) == "torch" and inner is not None:
            found.append((f"text_towers.{tower.name}", inner, frozenset({TEXT})))
        else:
            kept.append(f"text tower {tower.name} runs on {tower.runtime}, left as it is")
    # Building the image tower: quantising is an explicit ask for the model's runtime layout.
    runner = encoder._run
    if isinstance(runner, TorchRunner):
        found.append(("image_tower", runner._net, frozenset({IMAGE})))
    else:
        kept.append(f"image tower runs on {runner.name}, left as it is")
    return found


class _Layers:
    """The plain nn.Linear layers of some torch modules, each switchable between fp32 and
    dynamic int8 in place. The fp32 modules are kept aside until release()."""

    def __init__(self, modules: list[tuple[str, object, frozenset]]):
        import torch

        self.names: list[str] = []  # qualified: prefix.local
        self.sides: dict[str, frozenset] = {}  # name -> the sides whose vectors it shapes
        self.kinds: dict[str, set[str]] = {}  # the same layer in every block -> its names
        self._where: dict[str, tuple[object, str, object]] = {}
        for prefix, module, served in modules:
            for local, layer in module.named_modules():
                if type(layer) is torch.nn.Linear:  # subclasses (attention's) stay as they are
                    name = f"{prefix}.{local}"
                    self.names.append(name)
                    self.sides[name] = served
                    self.kinds.setdefault(_BLOCK_INDEX.sub(".*", name), set()).add(name)
                    self._where[name] = (module, local, layer)
        self._int8: set[str] = set()

    def set_int8(self, names) -> None:
        """Exactly `names` int8, every other layer fp32."""
        import torch

        wanted = set(names)
        for name in self._int8 - wanted:
            module, local, fp32 = self._where[name]
            parent, _, child = local.rpartition(".")
            # quantize_dynamic left its qconfig on the layer it replaced, and honours one it
            # finds: kept, the next call would quantise this layer again.
            fp32.__dict__.pop("qconfig", None)
            setattr(module.get_submodule(parent), child, fp32)
        by_module: dict[int, tuple[object, list[str]]] = {}
        for name in wanted - self._int8:
            module, local, fp32 = self._where[name]
            by_module.setdefault(id(module), (module, []))[1].append(local)
        for module, locals_ in by_module.values():
            spec = {local: torch.ao.quantization.per_channel_dynamic_qconfig for local in locals_}
            with warnings.catch_warnings():
                # The API's deprecation notices (see the module docstring), not the user's.
                warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.ao")
                warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprec")
                warnings.filterwarnings("ignore", message=r".*quantize_per_\w+.*deprecated")
                torch.ao.quantization.quantize_dynamic(
                    module, spec, dtype=torch.qint8, inplace=True
                )
            for local in locals_:
                # open_clip reads its compute dtype off the first MLP weight, which int8 layers
                # lack; this is the attribute it looks for on int8 layers instead.
                module.get_submodule(local).int8_original_dtype = torch.float32
        self._int8 = wanted

    def release(self) -> None:
        self._where.clear()


# -- probes and checks ------------------------------------------------------------------------


def _sample_photos():
    """The scikit-image sample photos as RGB images, or None without scikit-image."""
    if importlib.util.find_spec("skimage") is None:
        return None
    from PIL import Image

    from xmodal.samples import PHOTOS, sample_photos

    names = [name for name, (_, source) in PHOTOS.items() if source == "skimage"]
    with tempfile.TemporaryDirectory() as folder:
        photos = sample_photos(folder, names)
        images = []
        for photo in photos:
            with Image.open(photo.path) as im:
                images.append(im.convert("RGB"))
    return images


def _require_cpu(device: str) -> None:
    if device != "cpu":
        raise DeviceError(
            f"dynamic int8 runs on the CPU only, not on {device}: torch's int8 linear kernels "
            "are CPU kernels (on a GPU, float16 autocast is the faster path); use device cpu"
        )
