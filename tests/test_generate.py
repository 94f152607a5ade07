"""Text-guided generation: the differentiable towers reproduce the encoders, a short run on the
real lite model raises its similarity to the prompt, a seed reproduces a run, negatives push
away, and bad input is refused with a clear error (library and CLI).

Runs are kept small (64-pixel images, a few views, 2-12 steps): lite's tower still sees each
view at 224 pixels, which is what a step costs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from xmodal.cli import main
from xmodal.errors import InvalidInputError, UnsupportedModalityError
from xmodal.generate import Generated, GenerateOptions, generate
from xmodal.generate.drawers import FourierPixels, from_pil, to_pil
from xmodal.generate.towers import differentiable_tower

SMALL = dict(size=64, cutouts=4)


def _square(path, size: int) -> Image.Image:
    return Image.open(path).convert("RGB").resize((size, size), Image.Resampling.BICUBIC)


def _pixels(image: Image.Image) -> torch.Tensor:
    array = np.asarray(image, dtype=np.float32) / 255
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0)


def _cosine(encoder, image: Image.Image, text: str) -> float:
    return float(encoder.embed_images([image])[0] @ encoder.embed_texts([text])[0])


@pytest.fixture(scope="module")
def lite_tower(lite):
    return differentiable_tower(lite)


# -- towers -----------------------------------------------------------------------------------


def test_lite_tower_reproduces_embed_images_on_real_photos(lite, lite_tower, photo_by_name):
    """The torch ConSE path equals the encoder's own (ONNX or torch) on the same pixels."""
    names = ["chelsea", "coffee", "astronaut"]
    squares = [_square(photo_by_name[n].path, lite_tower.size) for n in names]
    with torch.no_grad():
        ours = lite_tower.embed(torch.cat([_pixels(s) for s in squares])).numpy()
    theirs = lite.embed_images(squares)
    cosines = np.sum(ours * theirs, axis=1)
    assert np.all(cosines > 1 - 1e-4), cosines
    assert np.allclose(np.linalg.norm(ours, axis=1), 1, atol=1e-5)


def test_lite_tower_applies_a_trained_alignment_head(photo_by_name):
    from xmodal.models.lite import VARIANTS
    from xmodal.models.lite.conse import LiteEncoder
    from xmodal.models.lite.head import AlignmentHead

    torch.manual_seed(0)
    head = AlignmentHead(768, hidden=32, gate=True)
    with torch.no_grad():  # as if trained: a correction that is not zero
        head.mlp[-1].weight.normal_(0, 0.05)
    encoder = LiteEncoder(VARIANTS["lite"], head=head)
    tower = differentiable_tower(encoder)
    square = _square(photo_by_name["horse"].path, tower.size)
    with torch.no_grad():
        ours = tower.embed(_pixels(square)).numpy()[0]
    theirs = encoder.embed_images([square])[0]
    plain = differentiable_tower(LiteEncoder(VARIANTS["lite"])).embed(_pixels(square))
    assert float(ours @ theirs) > 1 - 1e-4
    assert float(plain.detach().numpy()[0] @ theirs) < 0.999  # the head did change it


def test_lite_tower_resizes_inside_torch_and_passes_gradients(lite_tower, photo_by_name):
    image = _pixels(_square(photo_by_name["chelsea"].path, 96)).requires_grad_(True)
    vec = lite_tower.embed(image)
    assert vec.shape == (1, 768)
    vec[0, 0].backward()
    assert image.grad is not None and float(image.grad.abs().sum()) > 0


@pytest.fixture(scope="module")
def tiny_clip_models(tmp_path_factory):
    """Tiny random OpenCLIP and HF CLIP checkpoints, saved as users save theirs."""
    pytest.importorskip("open_clip")
    from checkpoints import save_hf_clip, save_openclip_checkpoint
    from xmodal.models import load_model

    root = tmp_path_factory.mktemp("tiny")
    arch, path = save_openclip_checkpoint(root / "openclip")
    return {
        "openclip": load_model(f"openclip:{arch}/{path}"),
        "hf": load_model(f"hf:{save_hf_clip(root / 'clip')}"),
    }


@pytest.mark.parametrize("kind", ["openclip", "hf"])
def test_clip_towers_reproduce_embed_images(kind, tiny_clip_models, photo_by_name):
    encoder = tiny_clip_models[kind]
    tower = differentiable_tower(encoder)
    squares = [_square(photo_by_name[n].path, tower.size) for n in ("horse", "rocket")]
    with torch.no_grad():
        ours = tower.embed(torch.cat([_pixels(s) for s in squares])).numpy()
    cosines = np.sum(ours * encoder.embed_images(squares), axis=1)
    assert np.all(cosines > 1 - 1e-4), cosines


def test_a_short_run_with_a_tiny_openclip_model_raises_its_similarity(tiny_clip_models):
    encoder = tiny_clip_models["openclip"]
    result = generate("a horse", encoder, GenerateOptions(steps=8, size=64, cutouts=4))
    assert result.similarity > result.start_similarity + 0.05
    # Its weights are shared with the encoder: they collect no gradients.
    assert all(p.grad is None for p in encoder.model.parameters())


def test_models_that_do_not_see_or_give_no_gradients_are_refused(tmp_path, fake_encoder):
    pytest.importorskip("open_clip")
    from checkpoints import save_openclip_checkpoint
    from xmodal.models import load_model
    from xmodal.models.export import export_onnx

    arch, path = save_openclip_checkpoint(tmp_path / "openclip")
    export_onnx(f"openclip:{arch}/{path}", tmp_path / "exported")
    onnx = load_model(f"onnx:{tmp_path / 'exported'}")
    with pytest.raises(UnsupportedModalityError, match="ONNX Runtime gives no gradients"):
        differentiable_tower(onnx)
    with pytest.raises(UnsupportedModalityError, match="ONNX"):
        generate("a cat", f"onnx:{tmp_path / 'exported'}", GenerateOptions(steps=1, size=32))
    with pytest.raises(InvalidInputError, match="no differentiable image tower"):
        differentiable_tower(fake_encoder)


# -- drawers ----------------------------------------------------------------------------------


def test_pixels_drawer_starts_from_an_init_image(photo_by_name):
    photo = Image.open(photo_by_name["coffee"].path).convert("RGB")
    start = from_pil(photo, 96)
    with torch.no_grad():
        drawn = FourierPixels(96, torch.Generator().manual_seed(0), start)()
    # The inverse transform only loses the clamp away from 0 and 1.
    assert float((drawn - start).abs().mean()) < 0.02
    assert to_pil(drawn).size == (96, 96)


# -- generation on lite -----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("drawer", ["pixels", "strokes"])
def test_a_short_run_raises_the_similarity_to_the_prompt(lite, drawer):
    steps = []
    result = generate(
        "a red apple",
        lite,
        GenerateOptions(drawer=drawer, steps=12, **SMALL),
        on_step=lambda step, sim: steps.append(step),
    )
    assert isinstance(result, Generated) and result.image.size == (64, 64)
    assert result.similarity > result.start_similarity + 0.05, result
    assert steps == list(range(1, 13)) and len(result.history) == 12
    # The final score is the encoder's own, on the image as saved.
    assert result.similarity == pytest.approx(_cosine(lite, result.image, "a red apple"), abs=1e-5)


@pytest.mark.slow
def test_a_seed_reproduces_the_image_and_another_seed_changes_it(lite):
    def run(seed: int) -> bytes:
        options = GenerateOptions(drawer="strokes", steps=2, seed=seed, strokes=16, **SMALL)
        return generate("a lighthouse", lite, options).image.tobytes()

    first = run(3)
    assert run(3) == first
    assert run(4) != first


@pytest.mark.slow
def test_a_negative_prompt_lowers_that_texts_similarity(lite):
    def dog_score(negatives) -> float:
        options = GenerateOptions(steps=10, negatives=negatives, **SMALL)
        return _cosine(lite, generate("a cat", lite, options).image, "a dog")

    assert dog_score(["a dog^2"]) < dog_score([]) - 0.02


@pytest.mark.slow
def test_frames_are_kept_every_n_steps(lite, photo_by_name):
    init = Image.open(photo_by_name["coffee"].path)
    options = GenerateOptions(steps=4, save_every=2, init_image=init, **SMALL)
    result = generate("a cup of coffee", lite, options)
    assert len(result.frames) == 3  # the start, after step 2 and after step 4
    assert result.frames[-1].tobytes() == result.image.tobytes()


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prompt, options, message",
    [
        ("", {}, "empty prompt"),
        ("   ", {}, "empty prompt"),
        ("x" * 1001, {}, "at most 1000"),
        ("a cat | ", {}, "empty term"),
        ("a cat^-1", {}, "positive weight"),
        ("a cat", {"size": 16}, "size must be between 32 and 1024"),
        ("a cat", {"size": 2048}, "size must be between 32 and 1024"),
        ("a cat", {"steps": 0}, "steps must be between 1 and 5000"),
        ("a cat", {"steps": 5001}, "steps must be between 1 and 5000"),
        ("a cat", {"cutouts": 0}, "cutouts must be between 1"),
        ("a cat", {"drawer": "crayons"}, "unknown drawer"),
        ("a cat", {"negatives": [" "]}, "empty negative"),
    ],
)
def test_bad_prompts_and_options_are_clear_errors(prompt, options, message):
    # Checked before any model loads: the fake name would fail to load otherwise.
    with pytest.raises(InvalidInputError, match=message):
        generate(prompt, "no-such-model", GenerateOptions(**options))


# -- CLI ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_writes_the_image_frames_and_an_animation(tmp_path):
    out, gif = tmp_path / "apple.png", tmp_path / "run.gif"
    args = ["generate", "a red apple", "--out", str(out), "--steps", "3", "--size", "64"]
    args += ["--cutouts", "2", "--save-every", "1", "--frames", str(tmp_path / "frames")]
    result = CliRunner().invoke(main, [*args, "--animation", str(gif), "--not", "a pear"])
    assert result.exit_code == 0, result.output
    assert "similarity" in result.output
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (64, 64)
    with Image.open(gif) as animation:
        assert animation.format == "GIF" and animation.n_frames == 4
    assert len(list((tmp_path / "frames").glob("frame_*.png"))) == 4


def test_cli_refuses_a_bad_size_without_a_traceback(tmp_path):
    out = tmp_path / "x.png"
    result = CliRunner().invoke(main, ["generate", "a cat", "--out", str(out), "--size", "8"])
    assert result.exit_code == 1
    assert "size must be between 32 and 1024" in result.output
    assert "Traceback" not in result.output and not out.exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--generator", "nope:model"], "unknown generator"),
        (["--generator", "diffusers:/no/such/folder"], "does not exist"),
        (["--generator", "diffusers:x", "--init", "x.png"], "not --generator"),
    ],
)
def test_cli_refuses_a_bad_generator_without_a_traceback(tmp_path, extra, message):
    pytest.importorskip("diffusers")
    out = tmp_path / "x.png"
    result = CliRunner().invoke(main, ["generate", "a cat", "--out", str(out), *extra])
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not out.exists()
