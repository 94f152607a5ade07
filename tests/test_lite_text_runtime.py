"""lite's MiniLM text tower on ONNX Runtime: torch's vectors, a text-only search without torch,
and the image tower built only when an image is embedded."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from xmodal.errors import InvalidInputError
from xmodal.models import load_model
from xmodal.models.lite.classes import class_texts
from xmodal.models.lite.text import MiniLMTower

# Real texts: ImageNet class descriptions (short to long) and captions in several languages.
TEXTS = [
    *class_texts("gloss")[::50],
    "a cat sleeping on a sofa",
    "two dogs playing in the snow",
    "Ein rotes Auto parkt vor dem Haus.",
    "un bateau sur la mer au coucher du soleil",
    "猫がソファで寝ている",
    "a " * 400,  # cut at the tower's 256 tokens
]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def towers():
    return MiniLMTower(runtime="onnx"), MiniLMTower(runtime="torch")


def test_onnx_tower_gives_torchs_vectors_on_real_texts(towers):
    onnx, torch_ = towers
    assert (onnx.runtime, torch_.runtime) == ("onnx", "torch")
    got, expected = onnx.embed(TEXTS), torch_.embed(TEXTS)
    assert got.shape == (len(TEXTS), 384) and got.dtype == np.float32
    assert _cosines(got, expected).min() >= 0.9999
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_batch_padding_does_not_change_a_text_vector(towers):
    onnx, _ = towers
    alone = onnx.embed(["a cat"])
    padded = onnx.embed(["a cat", TEXTS[0]])[:1]
    assert _cosines(alone, padded).min() >= 0.9999


def test_existing_lite_collections_keep_their_text_vectors(lite):
    """The same model name gives the same vectors: ONNX (the default) against eager torch."""
    assert lite.text_towers[0].runtime == "onnx"
    eager = load_model("lite", runtime="torch")
    assert eager.text_towers[0].runtime == "torch"
    assert _cosines(lite.embed_texts(TEXTS), eager.embed_texts(TEXTS)).min() >= 0.9999


def test_unknown_runtime_names_the_choices():
    with pytest.raises(InvalidInputError, match="auto, onnx, torch"):
        MiniLMTower(runtime="tensorrt")


def test_image_tower_is_built_on_the_first_image(photos):
    model = load_model("lite-en")
    model.embed_texts(["a cat"])
    assert "_run" not in vars(model)
    vec = model.embed_images([photos[0].path])
    assert "_run" in vars(model) and vec.shape == (1, model.dim)


# Runs the real CLI in a fresh interpreter, then reports which heavy modules it imported.
_CLI = """
import json, sys
from xmodal.cli import main
try:
    main(sys.argv[1:])
except SystemExit as e:
    code = e.code
heavy = ["torch", "transformers", "xmodal.models.lite.efficientnet", "xmodal.models.lite.head"]
print(json.dumps({"code": code, "loaded": [m for m in heavy if m in sys.modules]}))
"""


def _cli(*args: str) -> tuple[dict, list[str]]:
    """(the report, the lines the command printed before it)."""
    env = {**os.environ, "XMODAL_MODEL": "lite"}
    done = subprocess.run(
        [sys.executable, "-c", _CLI, *args], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    *printed, report = done.stdout.strip().splitlines()
    return json.loads(report), printed


def test_text_only_search_imports_neither_torch_nor_transformers(tmp_path, photos, lite):
    """Once the exports are cached (indexing with `lite` made them)."""
    from xmodal.engine.collection import Collection

    with Collection.open(tmp_path / "db", model=lite) as collection:
        collection.index([p.path for p in photos])
    report, printed = _cli("search", "--db", str(tmp_path / "db"), "--json", "a cat")
    assert report == {"code": 0, "loaded": []}
    (answer,) = [json.loads(line) for line in printed]
    assert "chelsea" in answer["results"][0]["path"]  # the cat photo comes first


def test_classify_runs_the_cached_image_graph_without_torch(photo_by_name, lite):
    lite.embed_images([photo_by_name["chelsea"].path])  # the image tower's export is cached
    cat = str(photo_by_name["chelsea"].path)
    report, printed = _cli("classify", "-l", "cat,dog,car", "--json", cat)
    assert report == {"code": 0, "loaded": []}
    assert json.loads(printed[0])["labels"][0]["label"] == "cat"
