"""`xmodal export onnx`: a torch model as ONNX graphs that run without torch (models/exported).

export_onnx loads the model on torch, traces one graph per side (graphs.py), writes the
tokenizer and preprocessing beside them, then loads the folder as `onnx:DIR` and compares its
vectors with torch's on real images and texts. A graph that does not reproduce torch (fp32:
cosine >= 0.9999 per row) fails the export; with int8, each side is quantised (quantize.py) and
kept int8 only where it stays within cosine 0.99 per row and 90% top-10 retrieval overlap,
otherwise that side stays fp32. Everything is written to a temporary folder beside DIR and
renamed into place, so DIR is either the old export or the whole new one.
"""

from __future__ import annotations

import io
import os
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xmodal.errors import ExportError, XmodalError
from xmodal.models import parity
from xmodal.models.exported.card import CARD, OnnxCard, TowerSpec

OPSET = 17
# Texts every export is checked on beside the gallery captions: lengths from one word to past
# the context, several scripts.
PROBE_TEXTS = (
    "a cat",
    "a photo of a dog running on the beach at sunset",
    "Ein Hund spielt im Schnee.",
    "बगीचे में खेलता हुआ एक बच्चा",
    "猫がソファで寝ている",
    "red",
    "a crane lifting heavy steel beams at a construction site, " * 12,
)


@dataclass
class ExportReport:
    folder: Path
    source: str
    precision: dict[str, str]  # side -> fp32 | int8
    parity: dict[str, dict]  # "image-fp32", "text-int8", ... -> parity.Parity.to_dict()
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def export_onnx(
    model: str,
    out: str | Path,
    *,
    int8: bool = False,
    gallery: str | Path | None = None,
    force: bool = False,
    log: Callable[[str], None] = lambda message: None,
) -> ExportReport:
    """Export `model` (a name load_model takes) into folder `out`; see the module docstring."""
    from xmodal.models.export.gallery import default_gallery, folder_gallery

    started = time.perf_counter()
    out = Path(out).expanduser().resolve()
    _check_target(out, force)
    images = folder_gallery(gallery) if gallery else default_gallery()
    log(f"loading {model} on torch")
    reference = _load_reference(model)
    tmp = out.parent / f".{out.name}.export-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        report = _export_into(reference, tmp, images, int8, log)
        report.folder = out
        _publish(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report.seconds = time.perf_counter() - started
    return report


def _export_into(reference, tmp: Path, gallery, int8: bool, log) -> ExportReport:
    from xmodal.models.export.graphs import graphs_for

    graphs = graphs_for(reference)
    towers: list[TowerSpec] = []
    log("tracing the graphs")
    if graphs.image is not None:
        probe = _pixels(graphs.image_spec, gallery.images[:2])
        _trace(graphs.image, (probe,), ["pixels"], tmp / graphs.image_spec.graph, {0: "n"})
    for i, text in enumerate(graphs.texts):
        towers.append(_write_tower(reference, text, tmp, i, len(graphs.texts)))
    card = OnnxCard(
        name=f"{reference.name} (onnx)",
        source=reference.name,
        dim=reference.dim,
        logit_scale=float(reference.logit_scale),
        logit_bias=graphs.logit_bias,
        image=graphs.image_spec,
        towers=tuple(towers),
        route=graphs.route,
    )
    card.write(tmp)
    log(f"checking against torch on {len(gallery.images)} images and texts")
    ref = _Vectors.of(reference, gallery)
    fp32 = _Vectors.of(_load(tmp), gallery)
    results = {f"{side}-fp32": fp32.parity(ref, side) for side in _sides(card)}
    failed = [r for r in results.values() if not r.passes(parity.FP32_MIN_COSINE)]
    if failed:
        raise ExportError(
            f"the ONNX graphs of {reference.name} do not reproduce torch "
            f"({'; '.join(r.describe() for r in failed)}; need cosine >= "
            f"{parity.FP32_MIN_COSINE} per row): nothing was written"
        )
    precision = dict.fromkeys(_sides(card), "fp32")
    notes: list[str] = []
    if int8:
        card, notes = _int8(card, tmp, ref, gallery, results, precision, log)
    card = OnnxCard(
        **{
            **card.__dict__,
            "precision": "int8" if "int8" in precision.values() else "fp32",
            "parity": {k: v.to_dict() for k, v in results.items()},
        }
    )
    card.write(tmp)
    _remove_unused(tmp, card)
    return ExportReport(tmp, reference.name, precision, card.parity, notes)


def _write_tower(reference, text, tmp: Path, i: int, count: int) -> TowerSpec:
    """Graph, tokenizer and centre files of one text tower -> its TowerSpec."""
    from xmodal.models.exported.tokens import TextTokenizer, TokenizerSpec

    suffix = "" if count == 1 else f"-{text.tower.name or i}"
    spec = text.tower
    if text.centre is not None:
        np.save(tmp / spec.centre, np.asarray(text.centre, dtype=np.float32))
    if text.module is None:
        return spec
    tokenizer_file = f"tokenizer{suffix}.json"
    if text.tokenizer_file is not None:
        shutil.copyfile(text.tokenizer_file, tmp / tokenizer_file)
        tokens = TokenizerSpec.from_dict({"file": tokenizer_file, **text.tokenizer})
    else:
        from xmodal.models.export.tokenizer_files import export_tokenizer

        tokens = export_tokenizer(reference, tmp, tokenizer_file)
    if text.padding is not None and tokens.padding != text.padding:
        tokens = TokenizerSpec.from_dict({**tokens.to_dict(), "padding": text.padding})
    feeds = TextTokenizer(tmp, tokens)(list(PROBE_TEXTS[:2]))
    names = list(tokens.inputs)
    graph = f"text{suffix}.onnx"
    example = tuple(_torch_tensor(feeds[n]) for n in names)
    _trace(text.module, example, names, tmp / graph, {0: "n", 1: "tokens"})
    return TowerSpec(**{**spec.__dict__, "graph": graph, "tokenizer": tokens.to_dict()})


def _int8(card, tmp, ref, gallery, results, precision, log):
    """Quantise each side, trying the fastest int8 first; a side keeps the first int8 graph
    that passes, else stays fp32."""
    from xmodal.models.export import quantize

    notes: list[str] = []
    if card.image is not None:
        source = tmp / card.image.graph
        target = tmp / "image-int8.onnx"
        if quantize.is_conv_net(source):
            batches = _calibration_batches(card.image, gallery.calibration)
            ladder = [("static QDQ", lambda: quantize.quantize_static(source, target, batches))]
        else:
            ladder = _dynamic_ladder([(source, target)])
        trial = _with(card, image=_replace(card.image, graph=target.name))
        card = _first_passing(
            card, trial, "image", ladder, tmp, ref, gallery, results, precision, notes, log
        )
    onnx_towers = [t for t in card.towers if t.graph is not None]
    if onnx_towers:
        pairs = [(tmp / t.graph, tmp / t.graph.replace(".onnx", "-int8.onnx")) for t in onnx_towers]
        renamed = dict(zip([t.graph for t in onnx_towers], [b.name for _, b in pairs]))
        towers = tuple(
            TowerSpec(**{**t.__dict__, "graph": renamed[t.graph], "one_at_a_time": True})
            if t.graph in renamed
            else t
            for t in card.towers
        )
        card = _first_passing(
            card,
            _with(card, towers=towers),
            "text",
            _dynamic_ladder(pairs),
            tmp,
            ref,
            gallery,
            results,
            precision,
            notes,
            log,
        )
    return card, notes


def _dynamic_ladder(pairs):
    from xmodal.models.export import quantize

    def run(keep: bool):
        for source, target in pairs:
            quantize.quantize_dynamic(source, target, keep_ffn_down=keep)

    return [
        ("dynamic", lambda: run(False)),
        ("dynamic, MLP down-projections in float", lambda: run(True)),
    ]


def _first_passing(card, trial, side, ladder, tmp, ref, gallery, results, precision, notes, log):
    for how, build in ladder:
        log(f"int8: {side} graph, {how}")
        build()
        trial.write(tmp)
        got = _Vectors.of(_load(tmp), gallery, side).parity(ref, side)
        results[f"{side}-int8"] = got
        if got.passes(parity.INT8_MIN_COSINE, parity.INT8_MIN_TOP10_OVERLAP):
            precision[side] = "int8"
            notes.append(f"{side}: int8 ({how}) kept: {got.describe()}")
            return trial
        notes.append(f"{side}: int8 ({how}) moved vectors too far: {got.describe()}")
    notes.append(
        f"{side}: kept fp32 (int8 needs cosine >= {parity.INT8_MIN_COSINE} per row and top-10 "
        f"overlap >= {parity.INT8_MIN_TOP10_OVERLAP:.0%})"
    )
    return card


@dataclass
class _Vectors:
    """A model's vectors for the gallery images and the query texts."""

    images: np.ndarray | None
    texts: np.ndarray | None

    @classmethod
    def of(cls, encoder, gallery, side: str | None = None) -> _Vectors:
        """Both sides, or only `side` (an int8 trial changes one; the other stays None)."""
        texts = images = None
        if side in (None, "text"):
            texts = encoder.embed_texts([*PROBE_TEXTS, *gallery.captions])
        if side in (None, "image") and "image" in encoder.modalities:
            images = encoder.embed_images(gallery.images)
        return cls(images, texts)

    def parity(self, ref: _Vectors, side: str) -> parity.Parity:
        """This model's `side` against the reference; the other side is the reference's, so the
        retrieval overlap (text queries over the gallery images) isolates this side."""
        if side == "image":
            overlap = parity.topk_overlap(ref.texts, ref.images, ref.texts, self.images)
            return parity.measure("image", ref.images, self.images, overlap)
        overlap = None
        if ref.images is not None:
            overlap = parity.topk_overlap(ref.texts, ref.images, self.texts, ref.images)
        return parity.measure("text", ref.texts, self.texts, overlap)


def _sides(card: OnnxCard) -> list[str]:
    return (["image"] if card.image is not None else []) + (["text"] if card.towers else [])


def _load(folder: Path):
    from xmodal.models.exported.encoder import OnnxEncoder

    return OnnxEncoder(folder)


def _load_reference(model: str):
    from xmodal.models.registry import load_model, parse_name

    prefix, arg = parse_name(model)
    lite = prefix == "lite"
    if prefix == "trained":
        from xmodal.models.trained import read_card

        lite = read_card(arg)["backend"] == "lite"
    if prefix == "onnx":
        raise ExportError(f"{model} is already an exported ONNX model")
    from xmodal.config import get_settings

    if get_settings().quantize:
        raise ExportError(
            "XMODAL_QUANTIZE is set: an export is checked against the fp32 model, so unset it "
            "(--int8 makes the int8 graphs)"
        )
    # lite's reference is eager torch for both towers (its default already runs ONNX graphs).
    options = {"runtime": "torch"} if lite else {}
    try:
        return load_model(model, device="cpu", **options)
    except XmodalError:
        raise
    except Exception as e:  # a backend's own failure while building the model
        raise ExportError(f"cannot load {model} to export it: {e}") from e


def _pixels(spec, paths) -> np.ndarray:
    """The pixels the runtime's transform makes of `paths`: what export traces with."""
    from xmodal.images import load_image
    from xmodal.models.exported.encoder import image_batcher

    size = None if spec.full_decode else spec.size  # decoded as the runtime will
    return image_batcher(spec)([load_image(p, min_side=size) for p in paths])


def _calibration_batches(spec, paths, batch: int = 8) -> list[np.ndarray]:
    # Whole batches only: some calibrators stack them and need one shape.
    return [_pixels(spec, paths[i : i + batch]) for i in range(0, len(paths) - batch + 1, batch)]


def _torch_tensor(array: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(array))


def _trace(module, example: tuple, names: list[str], path: Path, axes: dict) -> None:
    import torch

    inputs = tuple(_torch_tensor(x) if isinstance(x, np.ndarray) else x for x in example)
    # The exporter restores the module's own mode onto everything inside it afterwards: a
    # wrapper left in training mode would switch dropout on in the reference model too.
    module.eval()
    buffer = io.BytesIO()
    try:
        # Grad enabled: under no_grad nn.MultiheadAttention (open_clip's) takes a fused fast
        # path that has no ONNX form; tracing the plain path exports the same maths.
        with warnings.catch_warnings(), torch.enable_grad():
            warnings.simplefilter("ignore")  # the exporter's notices, not ours to show
            torch.onnx.export(
                module,
                inputs,
                buffer,
                dynamo=False,  # the TorchScript exporter: no onnxscript, one fixed graph
                opset_version=OPSET,
                input_names=names,
                output_names=["embedding"],
                dynamic_axes={**{n: axes for n in names}, "embedding": {0: "n"}},
            )
    except Exception as e:  # the exporter raises many kinds for unsupported operators
        raise ExportError(f"cannot trace {path.name}: {type(e).__name__}: {e}") from e
    path.write_bytes(buffer.getvalue())


def _with(card: OnnxCard, **changes) -> OnnxCard:
    return OnnxCard(**{**card.__dict__, **changes})


def _replace(spec, **changes):
    return type(spec)(**{**spec.__dict__, **changes})


def _remove_unused(folder: Path, card: OnnxCard) -> None:
    used = {CARD}
    if card.image is not None:
        used.add(card.image.graph)
    for t in card.towers:
        used.update(x for x in (t.graph, t.centre, (t.tokenizer or {}).get("file")) if x)
    for path in folder.iterdir():
        if path.name not in used:
            path.unlink()


def _check_target(out: Path, force: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise ExportError(f"{out} exists and is not a folder")
    if any(out.iterdir()) and not (force and (out / CARD).is_file()):
        what = (
            "an earlier export: add --force to replace it"
            if (out / CARD).is_file()
            else ("a folder with other files in it: choose an empty or new folder")
        )
        raise ExportError(f"{out} is {what}")


def _publish(tmp: Path, out: Path) -> None:
    """Rename the finished export into place; an old export is moved aside first, then removed."""
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
