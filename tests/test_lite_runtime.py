"""lite's image tower on ONNX Runtime and on torch: same logits, a cached export, the fallback."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from xmodal.errors import DeviceError, InvalidInputError, MissingExtraError
from xmodal.images import load_image
from xmodal.models import load_model
from xmodal.models.lite.efficientnet import load_efficientnet
from xmodal.models.lite.runtime import image_runner
from xmodal.models.lite.spec import IMAGE_TOWERS
from xmodal.models.preprocess import ImageTransform

TOWER = IMAGE_TOWERS["lite0"]


@pytest.fixture(scope="module")
def pixels(photos):
    transform = ImageTransform(TOWER.size, TOWER.mean, TOWER.std, resize_mode="pad")
    return transform.batch([load_image(p.path) for p in photos])


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache folder for this test; returns where lite's exports land."""
    monkeypatch.setenv("XMODAL_CACHE", str(tmp_path))
    return tmp_path / "lite"


def exports(cache) -> list:
    return sorted(cache.glob("*.onnx"))


def test_fixed_padding_equals_padding_per_input(pixels):
    import torch

    x = torch.from_numpy(pixels[:4])
    net = load_efficientnet(TOWER.package)
    with torch.inference_mode():
        per_input = net(x)
        fixed = net.fix_input_size(TOWER.size)(x)
    torch.testing.assert_close(fixed, per_input, rtol=0, atol=1e-5)


def test_onnx_and_torch_give_the_same_logits_on_real_photos(cache, pixels):
    onnx, torch_ = image_runner(TOWER, runtime="onnx"), image_runner(TOWER, runtime="torch")
    assert (onnx.name, torch_.name) == ("onnx", "torch")
    a, b = onnx(pixels), torch_(pixels)
    assert a.shape == b.shape == (len(pixels), 1000)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-3)
    assert (a.argmax(1) == b.argmax(1)).all()


def test_export_is_cached_once_and_reused(cache, pixels):
    first = image_runner(TOWER, runtime="onnx")
    [path] = exports(cache)
    stamp = path.stat().st_mtime_ns, path.stat().st_ino
    again = image_runner(TOWER, runtime="onnx")
    assert exports(cache) == [path]
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == stamp
    np.testing.assert_array_equal(again(pixels[:2]), first(pixels[:2]))
    assert not list(cache.glob(".*.tmp"))


@pytest.mark.parametrize("damage", ["truncate", "flip a byte", "garbage"])
def test_a_damaged_cache_file_is_exported_again(cache, pixels, damage):
    expected = image_runner(TOWER, runtime="torch")(pixels[:2])
    image_runner(TOWER, runtime="onnx")
    [path] = exports(cache)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip a byte":
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :])
    else:
        path.write_bytes(b"not an onnx graph")
    runner = image_runner(TOWER, runtime="onnx")
    assert runner.name == "onnx"
    np.testing.assert_allclose(runner(pixels[:2]), expected, rtol=0, atol=1e-3)
    assert path.read_bytes() == data  # rewritten whole


def test_torch_runtime_from_the_environment_exports_nothing(cache, monkeypatch, pixels):
    monkeypatch.setenv("XMODAL_LITE_RUNTIME", "torch")
    runner = image_runner(TOWER)
    assert runner.name == "torch"
    assert runner(pixels[:1]).shape == (1, 1000)
    assert not cache.exists()


def test_without_onnxruntime_auto_falls_back_to_torch(cache, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    assert image_runner(TOWER, runtime="auto").name == "torch"
    with pytest.raises(MissingExtraError, match="onnxruntime"):
        image_runner(TOWER, runtime="onnx")


def test_unknown_runtime_names_the_choices(cache):
    with pytest.raises(InvalidInputError, match="auto, onnx, torch"):
        image_runner(TOWER, runtime="tensorrt")


def test_the_default_model_runs_on_onnx_runtime(lite):
    assert lite.runtime == "onnx"


def _ort_has_cuda() -> bool:
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def test_onnx_on_cuda_without_its_provider_is_a_device_error(cache):
    if _ort_has_cuda():
        pytest.skip("this onnxruntime has the CUDA provider")
    # The device name is what resolve_device() gives on a GPU machine; the provider check
    # comes before anything touches a GPU, so it runs here.
    with pytest.raises(DeviceError, match="onnxruntime-gpu"):
        image_runner(TOWER, runtime="onnx", device="cuda:0")
    with pytest.raises(DeviceError, match="ONNX Runtime cannot run on it"):
        image_runner(TOWER, runtime="onnx", device="mps")
    assert exports(cache) == []  # refused before exporting


def test_lite_on_cuda_without_a_gpu_is_a_device_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(DeviceError, match="'cuda'"):
        load_model("lite-en", device="cuda")


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("runtime", ["auto", "torch"])
def test_lite_on_cuda_gives_the_cpu_vectors(runtime, lite, photos):
    gpu = load_model("lite", device="cuda", runtime=runtime)
    assert gpu.runtime == ("onnx" if runtime == "auto" and _ort_has_cuda() else "torch")
    paths = [p.path for p in photos]
    texts = ["a photo of a cat", "बिल्ली की फोटो"]
    np.testing.assert_allclose(gpu.embed_images(paths), lite.embed_images(paths), atol=1e-3)
    np.testing.assert_allclose(gpu.embed_texts(texts), lite.embed_texts(texts), atol=1e-4)
