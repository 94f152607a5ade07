"""The `device` option parsed and checked in one place, before any weights load."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from xmodal.errors import DeviceError, InvalidInputError  # noqa: E402
from xmodal.models import load_model  # noqa: E402
from xmodal.models.device import half_precision, parse_device, resolve_device  # noqa: E402

needs_no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
no_mps = not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available())


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("cpu", ("cpu", None)),
        (" CPU ", ("cpu", None)),
        ("cuda", ("cuda", None)),
        ("cuda:3", ("cuda", 3)),
        ("mps", ("mps", None)),
        ("auto", ("auto", None)),
    ],
)
def test_parse_device(spec, parsed):
    assert parse_device(spec) == parsed


@pytest.mark.parametrize("spec", ["", "gpu", "cuda:", "cuda:-1", "cuda:x", "cpu:0", "tpu", "0"])
def test_bad_strings_are_rejected_with_the_choices(spec):
    with pytest.raises(InvalidInputError, match="cpu, cuda, cuda:N, mps, auto"):
        resolve_device(spec)


def test_cpu_works():
    assert resolve_device("cpu") == "cpu"
    vectors = load_model("fake:8", device="cpu").embed_texts(["a cat"])
    assert vectors.shape == (1, 8)


@needs_no_gpu
@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cuda:1"])
def test_cuda_without_a_gpu_is_a_device_error(spec):
    with pytest.raises(DeviceError, match=f"'{spec}'.*use cpu or auto"):
        resolve_device(spec)


@needs_no_gpu
def test_auto_is_cpu_here():
    if not no_mps:
        pytest.skip("this machine has mps")
    assert resolve_device("auto") == "cpu"


@pytest.mark.skipif(not no_mps, reason="this machine has mps")
def test_mps_without_metal_is_a_device_error():
    with pytest.raises(DeviceError, match="Metal"):
        resolve_device("mps")


def test_default_comes_from_xmodal_device(monkeypatch):
    monkeypatch.setenv("XMODAL_DEVICE", "cpu")
    assert resolve_device() == "cpu"
    monkeypatch.setenv("XMODAL_DEVICE", "quantum")
    with pytest.raises(InvalidInputError, match="quantum"):
        resolve_device()
    # load_model checks the configured device too, before the backend sees it.
    with pytest.raises(InvalidInputError, match="quantum"):
        load_model("fake")


@needs_no_gpu
def test_unusable_device_fails_before_the_model_loads():
    # An unknown architecture would be ModelNotFoundError once the backend looks: the device is
    # checked first, before any backend or weights.
    with pytest.raises(DeviceError):
        load_model("openclip:NoSuchArch/random", device="cuda")
    with pytest.raises(DeviceError):
        load_model("lite", device="cuda:0")


def test_half_precision_only_on_cuda():
    assert half_precision("cuda:0") and half_precision(torch.device("cuda", 1))
    assert not half_precision("cpu") and not half_precision("mps")


@needs_no_gpu
def test_a_collection_checks_its_device_at_open_and_loads_its_model_there(tmp_path):
    from xmodal.engine.collection import Collection

    with pytest.raises(DeviceError, match="cuda"):
        Collection.open(tmp_path / "db", "lite", device="cuda")
    with Collection.open(tmp_path / "db", "lite", device="cpu") as collection:
        assert collection.count() == 0
