"""Training building blocks with values checkable by hand: the loss, its temperature clamp, the
learning-rate schedule, the epoch order, the settings' checks and trained-folder names."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from xmodal.errors import InvalidInputError, ModelLoadError, ModelNotFoundError  # noqa: E402
from xmodal.models import load_model  # noqa: E402
from xmodal.models.registry import TRAINED_CARD, parse_name  # noqa: E402
from xmodal.train.config import TrainConfig, TrainMode  # noqa: E402
from xmodal.train.data import batches  # noqa: E402
from xmodal.train.loss import MAX_LOG_SCALE, clamp_log_scale_, contrastive_loss  # noqa: E402
from xmodal.train.schedule import lr_at  # noqa: E402


def _log(x: float) -> torch.Tensor:
    return torch.tensor(math.log(x))


# -- loss ------------------------------------------------------------------------------------


def test_aligned_batch_at_high_scale_costs_nothing():
    # Orthonormal pairs: each image's own caption scores 1, every other 0.
    vecs = torch.eye(4, 8)
    loss = contrastive_loss(vecs, vecs.clone(), _log(100.0))
    # Each row: -log(e^100 / (e^100 + 3)) = log(1 + 3 e^-100).
    assert loss.item() == pytest.approx(math.log1p(3 * math.exp(-100)), abs=1e-6)
    assert loss.item() < 1e-6


def test_loss_value_by_hand_at_scale_one():
    # Two orthonormal pairs, scale 1: each row's logits are (1, 0) -> -log(e / (e + 1)).
    vecs = torch.eye(2)
    loss = contrastive_loss(vecs, vecs.clone(), _log(1.0))
    assert loss.item() == pytest.approx(math.log1p(math.exp(-1)), abs=1e-6)


def test_swapped_pairs_cost_more_than_chance():
    vecs = torch.eye(2)
    swapped = vecs.flip(0)  # image 0 now looks like caption 1 and the reverse
    assert contrastive_loss(vecs, swapped, _log(10.0)) > math.log(2)
    assert contrastive_loss(vecs, vecs, _log(10.0)) < math.log(2)


def test_loss_is_symmetric_and_ignores_vector_length():
    g = torch.Generator().manual_seed(0)
    image, text = torch.randn(5, 16, generator=g), torch.randn(5, 16, generator=g)
    scale = _log(20.0)
    loss = contrastive_loss(image, text, scale)
    assert contrastive_loss(text, image, scale).item() == pytest.approx(loss.item(), abs=1e-6)
    assert contrastive_loss(3 * image, text, scale).item() == pytest.approx(loss.item(), abs=1e-6)


def test_temperature_is_clamped_in_the_loss_and_after_a_step():
    vecs = torch.eye(2)
    at_cap = contrastive_loss(vecs, vecs.flip(0), torch.tensor(MAX_LOG_SCALE))
    past_cap = contrastive_loss(vecs, vecs.flip(0), torch.tensor(MAX_LOG_SCALE + 3))
    assert past_cap.item() == pytest.approx(at_cap.item())
    param = torch.nn.Parameter(torch.tensor(9.0))
    clamp_log_scale_(param)
    assert param.item() == pytest.approx(math.log(100))
    param.data.fill_(-2.0)
    clamp_log_scale_(param)
    assert param.item() == 0.0


def test_gradient_reaches_the_temperature():
    scale = torch.nn.Parameter(_log(1.0))
    vecs = torch.eye(3)
    contrastive_loss(vecs, vecs.clone(), scale).backward()
    # Aligned pairs: a sharper softmax lowers the loss, so the gradient on the scale is negative.
    assert scale.grad.item() < 0


# -- schedule --------------------------------------------------------------------------------


def test_schedule_warms_up_linearly_then_decays_by_cosine():
    lrs = [lr_at(s, peak=1.0, warmup=4, total=14) for s in range(15)]
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0]
    assert lrs[4] == 1.0  # the cosine starts at the peak
    assert lrs[9] == pytest.approx(0.5)  # halfway through the decay
    assert lrs[14] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in itertools.pairwise(lrs[4:]))


def test_schedule_floor_and_no_warmup():
    assert lr_at(0, peak=2.0, warmup=0, total=10) == 2.0
    assert lr_at(10, peak=2.0, warmup=0, total=10, floor=0.1) == pytest.approx(0.2)
    assert lr_at(99, peak=2.0, warmup=0, total=10, floor=0.1) == pytest.approx(0.2)


# -- epoch order, settings -------------------------------------------------------------------


def test_epoch_order_is_fixed_by_seed_and_epoch():
    first = batches(10, 4, seed=0, epoch=1)
    assert [len(b) for b in first] == [4, 4, 2]
    assert sorted(np.concatenate(first).tolist()) == list(range(10))
    again = batches(10, 4, seed=0, epoch=1)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    other = np.concatenate(batches(10, 4, seed=0, epoch=2))
    assert not np.array_equal(np.concatenate(first), other)
    assert [len(b) for b in batches(9, 4, seed=0, epoch=1)] == [4, 4]  # a lone pair is dropped


@pytest.mark.parametrize(
    "kwargs",
    [
        {"epochs": 0},
        {"batch_size": 1},
        {"accum": 0},
        {"lr": 0.0},
        {"warmup": 1.0},
        {"val_fraction": 0.0},
        {"patience": 0},
    ],
)
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(InvalidInputError):
        TrainConfig(**kwargs)


def test_modes():
    with pytest.raises(InvalidInputError, match="blocks"):
        TrainMode("blocks")
    with pytest.raises(InvalidInputError):
        TrainMode("everything")
    assert TrainMode("blocks", 2, "image").tower_list == ("image",)
    assert TrainConfig(mode=TrainMode("all")).peak_lr == 1e-5
    config = TrainConfig(mode=TrainMode("blocks", 2), lr=3e-4)
    assert TrainConfig.from_dict(config.to_dict()) == config


# -- trained-folder names --------------------------------------------------------------------


def test_a_folder_with_a_card_is_a_model_name(tmp_path):
    (tmp_path / TRAINED_CARD).write_text("{}")
    assert parse_name(str(tmp_path)) == ("trained", str(tmp_path))


def test_a_folder_without_a_card_says_so(tmp_path):
    with pytest.raises(ModelNotFoundError, match=TRAINED_CARD):
        load_model(str(tmp_path))


@pytest.mark.parametrize(
    ("card", "message"),
    [
        ("not json", "cannot read"),
        (json.dumps({"format": "something-else"}), "not an xmodal model card"),
        (
            json.dumps({"format": "xmodal-trained-model", "format_version": 99}),
            "upgrade xmodal",
        ),
        (
            json.dumps(
                {
                    "format": "xmodal-trained-model",
                    "format_version": 1,
                    "backend": "nope",
                    "base_model": "x",
                    "dim": 3,
                }
            ),
            "unknown backend",
        ),
    ],
)
def test_bad_cards_are_load_errors(tmp_path, card, message):
    (tmp_path / TRAINED_CARD).write_text(card)
    with pytest.raises(ModelLoadError, match=message):
        load_model(str(tmp_path))


# -- the command line: refusals are one-line errors ----------------------------------------------


@pytest.fixture
def photo_pairs(tmp_path, photos):
    path = tmp_path / "pairs.csv"
    rows = "".join(f"{p.path},a photo of a {p.label}\n" for p in photos)
    path.write_text("image,caption\n" + rows, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "fake"], "fake cannot be trained"),
        (["--model", "lite", "--resume"], "nothing to resume"),
        (["--model", "lite", "--batch-size", "1"], "batch-size"),
    ],
)
def test_train_command_refuses_with_a_reason(photo_pairs, tmp_path, args, message):
    from click.testing import CliRunner

    from xmodal.cli import main

    result = CliRunner().invoke(
        main, ["train", str(photo_pairs), "--out", str(tmp_path / "o"), *args]
    )
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_train_command_will_not_write_into_a_folder_with_other_files(photo_pairs, tmp_path):
    from click.testing import CliRunner

    from xmodal.cli import main

    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "notes.txt").write_text("mine")
    args = ["train", str(photo_pairs), "--model", "lite", "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "not empty" in result.output
