"""Training tiny random OpenCLIP and Hugging Face CLIP checkpoints on real photos: what trains in
each mode, checkpoint -> resume against an uninterrupted run, and the final folder as a model."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")
pytest.importorskip("transformers")

from safetensors.torch import load_file, save_file  # noqa: E402

from checkpoints import save_hf_clip, save_hf_siglip, save_openclip_checkpoint  # noqa: E402
from xmodal.engine.collection import Collection  # noqa: E402
from xmodal.errors import InvalidInputError, ModelLoadError  # noqa: E402
from xmodal.models import load_model  # noqa: E402
from xmodal.models.registry import TRAINED_CARD  # noqa: E402
from xmodal.train import TrainConfig, TrainMode, train  # noqa: E402
from xmodal.train.adapters import adapter_for  # noqa: E402
from xmodal.train.checkpoint import checkpoint_path, load_checkpoint  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# 14 photos: about 10 train (3 batches of up to 4) and 4 validation captions.
SMALL = dict(epochs=2, batch_size=4, val_fraction=0.25, patience=5)
HEADS = {
    "openclip": {"visual.proj", "text_projection", "logit_scale"},
    "hf": {"visual_projection.weight", "text_projection.weight", "logit_scale"},
}
LAST_IMAGE_BLOCK = {
    "openclip": ("visual.transformer.resblocks.1.", "visual.ln_post."),
    "hf": ("vision_model.encoder.layers.1.", "vision_model.post_layernorm."),
}


class Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def pairs_csv(tmp_path_factory, photos):
    path = tmp_path_factory.mktemp("pairs") / "pairs.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "caption"])
        for photo in photos:
            writer.writerow([photo.path, f"a photo of a {photo.label}"])
    return path


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    arch, path = save_openclip_checkpoint(tmp_path_factory.mktemp("openclip"))
    return {
        "openclip": f"openclip:{arch}/{path}",
        "hf": f"hf:{save_hf_clip(tmp_path_factory.mktemp('hf'))}",
    }


@pytest.fixture(scope="module")
def base_states(bases):
    return {k: _state(load_model(name)) for k, name in bases.items()}


def _state(encoder) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in encoder.model.state_dict().items()}


def _changed(before: dict, after: dict) -> set[str]:
    return {k for k in before if not torch.equal(before[k], after[k])}


@pytest.mark.parametrize("backend", ["openclip", "hf"])
def test_heads_mode_trains_the_heads_only_and_the_folder_is_a_model(
    backend, bases, base_states, pairs_csv, tmp_path, photos, monkeypatch
):
    out = tmp_path / "model"
    result = train(pairs_csv, bases[backend], out, TrainConfig(**SMALL))

    trained = load_checkpoint(checkpoint_path(out))["trainable"]
    assert set(trained) == HEADS[backend]
    # Every chosen weight moved; in the final folder nothing else differs from the base.
    assert _changed({k: base_states[backend][k] for k in trained}, trained) == set(trained)
    model = load_model(str(out))
    assert model.name == str(out.resolve())
    assert _changed(base_states[backend], _state(model)) <= HEADS[backend]

    texts = model.embed_texts(["a photo of a cat", "a rocket"])
    images = model.embed_images([p.path for p in photos[:3]])
    assert texts.shape == (2, model.dim) and images.shape == (3, model.dim)
    assert np.allclose(np.linalg.norm(images, axis=1), 1, atol=1e-5)

    # A collection bound to the folder by a relative name records its absolute path, so it
    # reopens with that model from any working directory.
    monkeypatch.chdir(out.parent)
    with Collection.open(tmp_path / "db", model=out.name) as collection:
        assert collection.model_name == str(out.resolve())
    monkeypatch.chdir(photos[0].path.parent)
    with Collection.open(tmp_path / "db") as collection:
        assert collection.encoder.name == str(out.resolve())
    card = result.card
    assert card["backend"] == backend and card["base_model"] == bases[backend]
    assert card["data"]["train_pairs"] + card["data"]["val_pairs"] == 14
    assert set(card["validation"]["before"]) >= {"text_to_image", "image_to_text"}
    assert (out / "MODEL_CARD.md").read_text().count(bases[backend]) >= 1


@pytest.mark.parametrize("backend", ["openclip", "hf"])
def test_blocks_mode_trains_the_last_block_of_the_chosen_tower(
    backend, bases, base_states, pairs_csv, tmp_path, photos
):
    out = tmp_path / "model"
    config = TrainConfig(mode=TrainMode("blocks", 1, "image"), **SMALL)
    train(pairs_csv, bases[backend], out, config)

    trained = load_checkpoint(checkpoint_path(out))["trainable"]
    block = {k for k in trained if k.startswith(LAST_IMAGE_BLOCK[backend])}
    assert block and set(trained) == HEADS[backend] | block
    assert _changed({k: base_states[backend][k] for k in trained}, trained) == set(trained)
    model = load_model(str(out))
    assert _changed(base_states[backend], _state(model)) <= set(trained)
    vecs = model.embed_images([p.path for p in photos[:2]])
    assert vecs.shape == (2, model.dim)


@pytest.mark.parametrize("backend", ["openclip", "hf"])
def test_resume_ends_where_an_uninterrupted_run_does(backend, bases, pairs_csv, tmp_path):
    config = TrainConfig(**{**SMALL, "epochs": 3})
    whole = train(pairs_csv, bases[backend], tmp_path / "whole", config)

    def stop_after_first(report):
        if report.epoch == 1:
            raise Interrupted

    with pytest.raises(Interrupted):
        train(pairs_csv, bases[backend], tmp_path / "cut", config, on_epoch=stop_after_first)
    assert not (tmp_path / "cut" / TRAINED_CARD).exists()  # no final folder yet
    resumed = train(pairs_csv, bases[backend], tmp_path / "cut", config, resume=True)

    assert resumed.resumed_from == 1 and resumed.epochs_run == whole.epochs_run == 3
    a = load_checkpoint(checkpoint_path(tmp_path / "whole"))
    b = load_checkpoint(checkpoint_path(tmp_path / "cut"))
    assert all(torch.equal(a["trainable"][k], b["trainable"][k]) for k in a["trainable"])
    assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]
    assert a["best_epoch"] == b["best_epoch"]
    final = [_state(load_model(str(tmp_path / run))) for run in ("whole", "cut")]
    assert _changed(*final) == set()


def test_early_stopping_keeps_the_untrained_weights_when_nothing_improves(
    bases, base_states, pairs_csv, tmp_path
):
    # A learning rate too small to move the ranking: validation never beats the base model.
    config = TrainConfig(**{**SMALL, "epochs": 10, "patience": 2, "lr": 1e-12})
    result = train(pairs_csv, bases["openclip"], tmp_path / "m", config)
    assert result.stopped_early and result.epochs_run == 2 and result.best_epoch == 0
    assert result.after == result.before
    assert _changed(base_states["openclip"], _state(load_model(str(tmp_path / "m")))) == set()


def test_a_run_is_not_resumed_with_other_settings(bases, pairs_csv, tmp_path):
    out = tmp_path / "run"
    train(pairs_csv, bases["openclip"], out, TrainConfig(**{**SMALL, "epochs": 1}))
    with pytest.raises(InvalidInputError, match="--resume"):
        train(pairs_csv, bases["openclip"], out, TrainConfig(**SMALL))
    with pytest.raises(InvalidInputError, match="epochs 1 -> 2"):
        train(pairs_csv, bases["openclip"], out, TrainConfig(**SMALL), resume=True)
    with pytest.raises(InvalidInputError, match="nothing to resume"):
        train(pairs_csv, bases["openclip"], tmp_path / "empty", TrainConfig(**SMALL), resume=True)
    # A finished run resumed as it was only writes its final folder again.
    again = train(
        pairs_csv, bases["openclip"], out, TrainConfig(**{**SMALL, "epochs": 1}), resume=True
    )
    assert again.epochs_run == 1 and load_model(str(out)).dim == 32


def test_the_openclip_folder_is_open_clips_own_format(bases, pairs_csv, tmp_path, photos):
    import open_clip

    out = tmp_path / "model"
    train(pairs_csv, bases["openclip"], out, TrainConfig(**{**SMALL, "epochs": 1}))
    ours = load_model(str(out))
    theirs = open_clip.create_model(f"local-dir:{out}").eval()
    tokens = open_clip.get_tokenizer(f"local-dir:{out}")(["a photo of a cat"])
    with torch.no_grad():
        expected = torch.nn.functional.normalize(theirs.encode_text(tokens), dim=-1).numpy()
    assert np.allclose(ours.embed_texts(["a photo of a cat"]), expected, atol=1e-5)


@pytest.mark.parametrize("backend", ["openclip", "hf"])
def test_weights_that_do_not_fit_the_base_are_refused(backend, bases, pairs_csv, tmp_path):
    out = tmp_path / "model"
    train(pairs_csv, bases[backend], out, TrainConfig(**{**SMALL, "epochs": 1}))
    weights = out / (
        "open_clip_model.safetensors" if backend == "openclip" else "model.safetensors"
    )
    state = load_file(weights)
    dropped = sorted(HEADS[backend] - {"logit_scale"})[0]
    del state[dropped]
    save_file(state, str(weights))
    # hf: transformers would fill the tensor with random numbers; the backend refuses first.
    says = f"do not match.*missing: {dropped}" if backend == "openclip" else f"lack.*{dropped}"
    with pytest.raises(ModelLoadError, match=says):
        load_model(str(out))


def test_a_copied_folder_loads_from_its_new_place(bases, pairs_csv, tmp_path):
    out = tmp_path / "model"
    train(pairs_csv, bases["hf"], out, TrainConfig(**{**SMALL, "epochs": 1}))
    moved = shutil.copytree(
        out, tmp_path / "elsewhere" / "model", ignore=shutil.ignore_patterns("checkpoint")
    )
    texts = ["a photo of a horse"]
    assert np.allclose(
        load_model(str(moved)).embed_texts(texts), load_model(str(out)).embed_texts(texts)
    )


def test_siglip_trains_its_heads_and_keeps_its_sigmoid_calibration(tmp_path):
    adapter = adapter_for(f"hf:{save_hf_siglip(tmp_path / 'siglip')}")
    heads = adapter.trainable_names(TrainMode("heads"))
    assert heads and all(n.startswith(("vision_model.head.", "text_model.head.")) for n in heads)
    everything = adapter.trainable_names(TrainMode("all"))
    assert "logit_bias" not in everything and "logit_scale" not in everything
    assert len(everything) == len(list(adapter.module.parameters())) - 2


def test_more_blocks_than_the_tower_has_is_an_error(bases):
    adapter = adapter_for(bases["openclip"])
    with pytest.raises(InvalidInputError, match="has 2 blocks"):
        adapter.trainable_names(TrainMode("blocks", 3, "text"))


def test_siglip_heads_train_and_the_folder_loads(tmp_path, pairs_csv, photos):
    base = f"hf:{save_hf_siglip(tmp_path / 'siglip')}"
    before = _state(load_model(base))
    train(pairs_csv, base, tmp_path / "m", TrainConfig(**{**SMALL, "epochs": 1}))
    trained = load_checkpoint(checkpoint_path(tmp_path / "m"))["trainable"]
    model = load_model(str(tmp_path / "m"))
    assert _changed(before, _state(model)) <= set(trained)
    assert all(k.startswith(("vision_model.head.", "text_model.head.")) for k in trained)
    assert model.logit_bias == pytest.approx(float(before["logit_bias"]))
    assert model.embed_images([photos[0].path]).shape == (1, model.dim)


def test_an_unreadable_image_is_skipped_with_its_reason(bases, pairs_csv, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a picture at all")
    pairs = tmp_path / "pairs.csv"
    rows = pairs_csv.read_text(encoding="utf-8") + f"{broken},a broken picture\n"
    pairs.write_text(rows, encoding="utf-8")
    result = train(pairs, bases["openclip"], tmp_path / "m", TrainConfig(**{**SMALL, "epochs": 1}))
    assert [path for path, _ in result.skipped] == [str(broken)]
    data = result.card["data"]
    assert data["skipped"] == 1 and data["train_pairs"] + data["val_pairs"] == 14


def test_accumulation_takes_one_optimiser_step_per_group(bases, pairs_csv, tmp_path):
    # About 10 training pairs in batches of 4: three forward passes an epoch.
    for accum, steps in ((1, 3), (2, 2), (3, 1)):
        config = TrainConfig(**{**SMALL, "epochs": 1, "accum": accum})
        out = tmp_path / f"accum{accum}"
        train(pairs_csv, bases["openclip"], out, config)
        state = load_checkpoint(checkpoint_path(out))
        assert state["step"] == steps
        assert int(state["optimizer"]["state"][0]["step"]) == steps
