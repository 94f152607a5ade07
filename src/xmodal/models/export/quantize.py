"""int8 versions of exported graphs, with ONNX Runtime's quantisation tools.

Convolutional image towers (EfficientNet-Lite) get static QDQ quantisation: per-channel int8
weights and uint8 activations whose ranges are calibrated on real images, which is how those
networks were designed to run. Transformer towers (text towers, ViT image towers) get dynamic
quantisation: int8 weights per channel, activation ranges measured per call, which keeps the
outliers of attention and layer norm from eating the range.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from xmodal.errors import ExportError

# A graph with at least this many convolutions is a convolutional network (a ViT has one: the
# patch embedding).
_CONV_NET_MIN_CONVS = 8


def is_conv_net(path: Path) -> bool:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return sum(node.op_type == "Conv" for node in model.graph.node) >= _CONV_NET_MIN_CONVS


# The MLP's down-projection of each transformer layer (BERT's output.dense, open_clip's
# mlp.c_proj, transformers CLIP's mlp.fc2): its inputs, after GELU, carry the outliers that
# dynamic int8 handles worst. On MiniLM keeping these 6 of 36 weight matrices in float moves the
# worst text from cosine 0.986 to 0.993 (benchmarks/encode.py).
FFN_DOWN = re.compile(r"(?<!attention)/output/dense/|/mlp/c_proj/|/mlp/fc2/")


def quantize_dynamic(source: Path, target: Path, *, keep_ffn_down: bool = False) -> None:
    """int8 MatMul/Gemm weights (per channel), dynamic uint8 activations; keep_ffn_down leaves
    the MLP down-projections in float."""
    import onnx
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        prepared = _prepare(source, Path(tmp) / "prepared.onnx")
        exclude = []
        if keep_ffn_down:
            graph = onnx.load(str(prepared), load_external_data=False).graph
            exclude = [n.name for n in graph.node if FFN_DOWN.search(n.name)]
        try:
            ort_dynamic(
                str(prepared),
                str(target),
                weight_type=QuantType.QInt8,
                per_channel=True,
                op_types_to_quantize=["MatMul", "Gemm"],
                nodes_to_exclude=exclude,
            )
        except Exception as e:  # onnxruntime's tools raise plain exceptions of many kinds
            raise ExportError(f"dynamic int8 quantisation of {source.name} failed: {e}") from e


def quantize_static(source: Path, target: Path, calibration: list[np.ndarray]) -> None:
    """QDQ int8 convolutions calibrated on `calibration` (batches of prepared pixels); the rest
    of the graph (lite's ConSE mix: softmax and the class-text matrix) stays float."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
    )
    from onnxruntime.quantization import quantize_static as ort_static

    class Reader(CalibrationDataReader):
        def __init__(self, name: str):
            self._batches: Iterator[np.ndarray] = iter(calibration)
            self._name = name

        def get_next(self):
            batch = next(self._batches, None)
            return None if batch is None else {self._name: batch}

    with tempfile.TemporaryDirectory() as tmp:
        prepared = _prepare(source, Path(tmp) / "prepared.onnx")
        try:
            ort_static(
                str(prepared),
                str(target),
                Reader(_input_name(prepared)),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=["Conv"],
                calibrate_method=CalibrationMethod.MinMax,
                extra_options={"CalibTensorRangeSymmetric": False},
            )
        except Exception as e:  # see above
            raise ExportError(f"static int8 quantisation of {source.name} failed: {e}") from e


def _prepare(source: Path, target: Path) -> Path:
    """Shape inference and graph clean-up, as ONNX Runtime recommends before quantising."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # ONNX's shape inference only: ONNX Runtime's symbolic one fails on MiniLM's graph and
    # then leaves temporary files in the working folder.
    try:
        quant_pre_process(str(source), str(target), skip_symbolic_shape=True)
        return target
    except Exception:  # onnxruntime's tools raise plain exceptions of many kinds
        return source


def _input_name(path: Path) -> str:
    import onnx

    return onnx.load(str(path), load_external_data=False).graph.input[0].name
