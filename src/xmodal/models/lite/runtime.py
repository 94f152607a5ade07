"""How lite's image tower runs: ONNX Runtime where it can, eager torch otherwise.

XMODAL_LITE_RUNTIME (or `load_model("lite", runtime=...)`) chooses:
  auto   (default) ONNX Runtime if it imports and its graph reproduces torch's logits, else torch.
  onnx   ONNX Runtime, or a ModelLoadError saying why not.
  torch  eager torch in channels_last layout (what auto falls back to).

Both give the same logits to within float rounding (ONNX Runtime fuses batch norm into the
convolutions and picks its own kernels), so vectors from either mix in one collection.

The ONNX graph is exported from the torch network once and kept in the cache folder
($XMODAL_CACHE, else the per-user cache dir) under lite/. The file name hashes everything the
export depends on (package versions, the network code, the export settings), so a stale file is
never picked up, and ends in the digest of its bytes, so a truncated or damaged file is noticed
and exported again. A fresh export is used only if it reproduces torch's logits on a probe
input. Files are written to a temp file and renamed, so no reader sees half a file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import warnings
from importlib import metadata
from pathlib import Path
from typing import Protocol

import numpy as np

from xmodal.config import get_settings
from xmodal.errors import InvalidInputError, MissingExtraError, ModelLoadError
from xmodal.models.lite.spec import ImageTower

RUNTIMES = ("auto", "onnx", "torch")
OPSET = 17
# Images per ONNX Runtime call: measured ~10% faster per image than 32 at once (activations
# stay in cache), and the indexer's batch of 32 still commits together.
ONNX_CHUNK = 8
# A fresh export against torch on a probe input; float rounding differences are ~1e-5.
_PROBE_TOLERANCE = 1e-3


class ImageRunner(Protocol):
    name: str

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """(n, 3, s, s) float32 pixels -> (n, classes) float32 logits."""


class TorchRunner:
    name = "torch"

    def __init__(self, net):
        import torch

        self._torch = torch
        # NHWC lets the depthwise and 1x1 convolutions use oneDNN's faster kernels.
        self._net = net.to(memory_format=torch.channels_last)

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        torch = self._torch
        x = torch.from_numpy(pixels).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return self._net(x).numpy()


class OnnxRunner:
    name = "onnx"

    def __init__(self, model: bytes, num_threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        # Waiting threads sleep instead of spinning, leaving the cores to the decode workers
        # that run beside the model while indexing.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's errors share no base class but Exception
            raise ModelLoadError(f"ONNX Runtime cannot load the lite graph: {e}") from e
        self._input = self._session.get_inputs()[0].name

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        if len(pixels) <= ONNX_CHUNK:
            return self._session.run(None, {self._input: pixels})[0]
        return np.concatenate(
            [self(pixels[i : i + ONNX_CHUNK]) for i in range(0, len(pixels), ONNX_CHUNK)]
        )


def cache_dir() -> Path:
    configured = get_settings().cache_dir
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("xmodal"))


def image_runner(
    tower: ImageTower, *, runtime: str | None = None, num_threads: int | None = None
) -> ImageRunner:
    """The fastest runner for `tower` that `runtime` allows (None: the configured one)."""
    runtime = runtime or get_settings().lite_runtime
    if runtime not in RUNTIMES:
        raise InvalidInputError(
            f"unknown lite runtime {runtime!r}: use one of {', '.join(RUNTIMES)}"
        )
    if runtime != "torch":
        try:
            return _onnx_runner(tower, num_threads)
        except ModelLoadError:
            if runtime == "onnx":
                raise
    return TorchRunner(_torch_net(tower))


def _torch_net(tower: ImageTower):
    from xmodal.models.lite.efficientnet import load_efficientnet

    return load_efficientnet(tower.package).fix_input_size(tower.size)


def _onnx_runner(tower: ImageTower, num_threads: int | None) -> OnnxRunner:
    import torch

    try:
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise MissingExtraError("the lite model's ONNX runtime", None, "onnxruntime") from e
    threads = num_threads or torch.get_num_threads()
    folder = cache_dir() / "lite"
    key = _export_key(tower)
    for path in sorted(folder.glob(f"{key}-*.onnx")):
        model = _read_verified(path)
        if model is not None:
            return OnnxRunner(model, threads)
    # Not cached (or damaged): export, and keep the graph only if it matches torch.
    net = _torch_net(tower)
    model = _export(net, tower.size)
    runner = OnnxRunner(model, threads)
    probe = np.random.default_rng(0).uniform(-1, 1, (2, 3, tower.size, tower.size))
    probe = probe.astype(np.float32)
    with torch.inference_mode():
        expected = net(torch.from_numpy(probe)).numpy()
    if not np.abs(runner(probe) - expected).max() <= _PROBE_TOLERANCE:
        raise ModelLoadError("the exported lite graph does not reproduce torch's logits")
    _write_atomically(folder / f"{key}-{_digest(model)}.onnx", model)
    return runner


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _read_verified(path: Path) -> bytes | None:
    """The file's bytes if they still hash to the digest in its name; None (and the file
    removed, as renames only ever publish whole files) if damaged."""
    try:
        data = path.read_bytes()
        if path.stem.endswith("-" + _digest(data)):
            return data
        path.unlink()
    except OSError:
        pass
    return None


def _export_key(tower: ImageTower) -> str:
    """PACKAGE-HASH, the hash over everything that shapes the exported graph."""
    from xmodal.models.lite import efficientnet

    parts = {
        "versions": [_version(p) for p in ("xmodal", tower.package, "torch")],
        "code": _digest(Path(efficientnet.__file__).read_bytes()),
        "opset": OPSET,
        "size": tower.size,
    }
    digest = hashlib.blake2b(json.dumps(parts, sort_keys=True).encode(), digest_size=8)
    return f"{tower.package}-{digest.hexdigest()}"


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def _export(net, size: int) -> bytes:
    import torch

    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's notices, not ours to show
            torch.onnx.export(
                net,
                (torch.zeros(1, 3, size, size),),
                buffer,
                dynamo=False,  # the TorchScript exporter: no onnxscript, one fixed graph
                opset_version=OPSET,
                input_names=["pixels"],
                output_names=["logits"],
                dynamic_axes={"pixels": {0: "n"}, "logits": {0: "n"}},
            )
    except (ImportError, RuntimeError) as e:  # RuntimeError: OnnxExporterError, e.g. no `onnx`
        raise ModelLoadError(f"cannot export the lite image tower to ONNX: {e}") from e
    return buffer.getvalue()


def _write_atomically(path: Path, data: bytes) -> None:
    """Best effort: a cache that cannot be written only costs an export on the next load."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(temp, path)
        except BaseException:
            os.unlink(temp)
            raise
    except OSError:
        pass
