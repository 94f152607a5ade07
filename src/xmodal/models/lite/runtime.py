"""How lite's image tower runs: ONNX Runtime where it can, eager torch otherwise.

XMODAL_LITE_RUNTIME (or `load_model("lite", runtime=...)`) chooses:
  auto   (default) ONNX Runtime if it imports and its graph reproduces torch's logits, else torch.
  onnx   ONNX Runtime, or a ModelLoadError saying why not.
  torch  eager torch in channels_last layout (what auto falls back to).

On a GPU (`device` cuda or cuda:N) ONNX Runtime runs the graph with its CUDAExecutionProvider
(the onnxruntime-gpu package); "auto" without that provider runs torch on the GPU instead, and
"onnx" is a DeviceError. On mps only torch can run it.

Both give the same logits to within float rounding (ONNX Runtime fuses batch norm into the
convolutions and picks its own kernels), so vectors from either mix in one collection.

The ONNX graph is exported from the torch network once and kept in the cache folder
($XMODAL_CACHE, else the per-user cache dir) under lite/. The file name hashes everything the
export depends on (package versions, the network code, the export settings), so a stale file is
never picked up, and ends in a checksum of its bytes, so a truncated or damaged file is noticed
and exported again. A fresh export is used only if it reproduces torch's logits on a probe
input. Files are written to a temp file and renamed, so no reader sees half a file.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
import zlib
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Protocol

import numpy as np

from xmodal.atomic import write_atomically
from xmodal.config import get_settings
from xmodal.errors import DeviceError, InvalidInputError, MissingExtraError, ModelLoadError
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

    def __init__(self, net, device: str = "cpu", num_threads: int | None = None):
        import torch

        if num_threads:
            torch.set_num_threads(num_threads)
        self._torch = torch
        self._device = torch.device(device)
        # NHWC lets the depthwise and 1x1 convolutions use oneDNN's (and cuDNN's) faster kernels.
        self._net = net.to(self._device, memory_format=torch.channels_last)

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        torch = self._torch
        x = torch.from_numpy(pixels).to(self._device)
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return self._net(x).float().cpu().numpy()


class OnnxRunner:
    name = "onnx"

    def __init__(self, model: bytes, num_threads: int, device: str = "cpu"):
        self._session = onnx_session(model, num_threads, device)
        # A CUDA provider that cannot start (no driver, missing CUDA libraries) only warns and
        # leaves the session on the CPU: say so instead of running there unasked.
        if (
            device.startswith("cuda")
            and "CUDAExecutionProvider" not in self._session.get_providers()
        ):
            raise DeviceError(
                f"ONNX Runtime's CUDA provider could not start on {device} (see its warning "
                "above: CUDA and cuDNN libraries); XMODAL_LITE_RUNTIME=torch runs torch on the GPU"
            )
        self._input = self._session.get_inputs()[0].name

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        if len(pixels) <= ONNX_CHUNK:
            return self._session.run(None, {self._input: pixels})[0]
        return np.concatenate(
            [self(pixels[i : i + ONNX_CHUNK]) for i in range(0, len(pixels), ONNX_CHUNK)]
        )


def onnx_session(model: bytes, num_threads: int, device: str = "cpu", *, ort_format=False):
    """An ONNX Runtime session for a lite graph; num_threads 0: ONNX Runtime's own choice.
    ort_format: `model` is in ONNX Runtime's own format (to_ort_format); the session then
    reads the weights from those bytes, so the caller keeps them alive."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if ort_format:
        options.add_session_config_entry("session.load_model_format", "ORT")
        options.add_session_config_entry("session.use_ort_model_bytes_directly", "1")
    options.intra_op_num_threads = num_threads
    options.inter_op_num_threads = 1
    # Waiting threads sleep instead of spinning, leaving the cores to the decode workers
    # that run beside the model while indexing.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(model, options, providers=_providers(device))
    except Exception as e:  # onnxruntime's errors share no base class but Exception
        raise ModelLoadError(f"ONNX Runtime cannot load the lite graph: {e}") from e


def to_ort_format(model: bytes) -> bytes:
    """An ONNX graph, optimised and saved in ONNX Runtime's own format, which loads without
    parsing or optimising again (~1.5x faster: most of a text-only cold start is this load)."""
    import tempfile

    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "graph.ort"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(out)
        options.add_session_config_entry("session.save_model_format", "ORT")
        ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        return out.read_bytes()


def cached_graph(key: str, build: Callable[[], bytes]) -> bytes:
    """The graph cached under `key` (export_key), else build() (which exports and verifies
    it), kept for next time."""
    folder = cache_dir() / "lite"
    for path in sorted(folder.glob(f"{key}-*.onnx")):
        model = _read_verified(path)
        if model is not None:
            return model
    model = build()
    _write_atomically(folder / f"{key}-{_content_tag(model)}.onnx", model)
    return model


def export_key(name: str, parts: dict) -> str:
    """NAME-HASH, the hash over everything (versions, code, settings) that shapes a graph."""
    hashed = hashlib.blake2b(json.dumps(parts, sort_keys=True).encode(), digest_size=8)
    return f"{name}-{hashed.hexdigest()}"


def cache_dir() -> Path:
    configured = get_settings().cache_dir
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("xmodal"))


def image_runner(
    tower: ImageTower,
    *,
    runtime: str | None = None,
    num_threads: int | None = None,
    device: str = "cpu",
) -> ImageRunner:
    """The fastest runner for `tower` that `runtime` allows (None: the configured one) on
    `device`, a name resolve_device() gave ("cpu", "cuda:N" or "mps")."""
    runtime = runtime or get_settings().lite_runtime
    if runtime not in RUNTIMES:
        raise InvalidInputError(
            f"unknown lite runtime {runtime!r}: use one of {', '.join(RUNTIMES)}"
        )
    if runtime != "torch" and _onnx_can_run_on(device, required=runtime == "onnx"):
        try:
            return _onnx_runner(tower, num_threads, device)
        except ModelLoadError:
            if runtime == "onnx":
                raise
    return TorchRunner(_torch_net(tower), device, num_threads)


def _onnx_can_run_on(device: str, *, required: bool) -> bool:
    """Whether ONNX Runtime has a provider for `device`; DeviceError when `required` and not."""
    if device == "cpu":
        return True
    if device.startswith("cuda"):
        try:
            import onnxruntime as ort
        except ImportError:
            return False  # _onnx_runner says the package is missing when it is required
        if "CUDAExecutionProvider" in ort.get_available_providers():
            return True
        why = (
            "the installed onnxruntime has no CUDAExecutionProvider: install onnxruntime-gpu "
            "in its place, or set XMODAL_LITE_RUNTIME=torch (or auto) to run torch on the GPU"
        )
    else:
        why = "ONNX Runtime cannot run on it: set XMODAL_LITE_RUNTIME=torch (or auto)"
    if required:
        raise DeviceError(f"the lite image tower on {device} with the onnx runtime: {why}")
    return False


def _providers(device: str) -> list:
    if not device.startswith("cuda"):
        return ["CPUExecutionProvider"]
    index = int(device.partition(":")[2] or 0)
    # CPU stays listed for the few operators the CUDA provider lacks.
    return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]


def _torch_net(tower: ImageTower):
    from xmodal.models.lite.efficientnet import load_efficientnet

    return load_efficientnet(tower.package).fix_input_size(tower.size)


def _onnx_runner(tower: ImageTower, num_threads: int | None, device: str = "cpu") -> OnnxRunner:
    try:
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise MissingExtraError("the lite model's ONNX runtime", None, "onnxruntime") from e
    # 0: ONNX Runtime's default, one thread per physical core (as torch's), without importing
    # torch when the graph is cached.
    threads = num_threads or 0

    def build() -> bytes:
        import torch

        # Kept only if it matches torch (both on the CPU: the check is of the graph, not of a
        # GPU's rounding).
        net = _torch_net(tower)
        model = _export(net, tower.size)
        probe = np.random.default_rng(0).uniform(-1, 1, (2, 3, tower.size, tower.size))
        probe = probe.astype(np.float32)
        with torch.inference_mode():
            expected = net(torch.from_numpy(probe)).numpy()
        if not np.abs(OnnxRunner(model, threads)(probe) - expected).max() <= _PROBE_TOLERANCE:
            raise ModelLoadError("the exported lite graph does not reproduce torch's logits")
        return model

    return OnnxRunner(cached_graph(_export_key(tower), build), threads, device)


def digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _content_tag(data: bytes) -> str:
    # CRC-32 and the length: enough to notice a damaged file (nothing here is adversarial),
    # and several times faster than a cryptographic hash over a 90 MB graph at every start.
    return f"{len(data):x}{zlib.crc32(data):08x}"


def _read_verified(path: Path) -> bytes | None:
    """The file's bytes if they still match the checksum in its name; None (and the file
    removed, as renames only ever publish whole files) if damaged."""
    try:
        data = path.read_bytes()
        if path.stem.endswith("-" + _content_tag(data)):
            return data
        path.unlink()
    except OSError:
        pass
    return None


def _export_key(tower: ImageTower) -> str:
    """PACKAGE-HASH, the hash over everything that shapes the exported graph."""
    # The network's source by path: importing it would import torch.
    network_code = Path(__file__).with_name("efficientnet.py")
    parts = {
        "versions": [version(p) for p in ("xmodal", tower.package, "torch")],
        "code": digest(network_code.read_bytes()),
        "opset": OPSET,
        "size": tower.size,
    }
    return export_key(tower.package, parts)


def version(distribution: str) -> str:
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
        write_atomically(path, data, fsync=False)
    except OSError:
        pass
