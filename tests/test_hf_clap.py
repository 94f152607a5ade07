"""CLAP through the hf backend: tiny random ClapModels saved with save_pretrained (a RoBERTa-style
byte-level BPE tokenizer trained here, a ClapFeatureExtractor), loaded as hf:DIR, compared with
transformers' own ClapModel on real recordings, and used by a collection of real sounds."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")
pytest.importorskip("soundfile")

from checkpoints import add_to_hf_cache, save_hf_clip  # noqa: E402
from offline import error_within_guard, no_network  # noqa: E402
from xmodal.audio import load_audio  # noqa: E402
from xmodal.engine.collection import Collection  # noqa: E402
from xmodal.errors import (  # noqa: E402
    DeviceError,
    InvalidInputError,
    ModelLoadError,
    UnsupportedModalityError,
)
from xmodal.models import hf as backend  # noqa: E402
from xmodal.models import hub, load_model  # noqa: E402
from xmodal.models.hf_clap import ClapEncoder  # noqa: E402

ASTERISK = Path("/usr/share/asterisk/sounds/en")
FREEDESKTOP = Path("/usr/share/sounds/freedesktop/stereo")
pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.skipif(
        not (ASTERISK.is_dir() and FREEDESKTOP.is_dir()),
        reason="needs Debian asterisk-core-sounds-en-wav and sound-theme-freedesktop (.ci/run)",
    ),
]

RATE = 48_000  # LAION CLAP's rate, kept so that the recordings are resampled as for real models
WINDOW_S = 2  # the extractor's max_length_s (10 for real models): the test's long clips are 4 s
DIM = 16
LOGIT_SCALE_A = 33.0  # distinctive, so a test can tell "read from the checkpoint" from a default
TEXTS = ["the sound of a bell", "a man says goodbye", "a phone is ringing in the next room"]
# Real recordings: 8 kHz voice prompts (WAV) and 44.1 kHz stereo sound effects (Ogg Vorbis).
SOUNDS = {
    "goodbye": ASTERISK / "vm-goodbye.wav",
    "thanks": ASTERISK / "queue-thankyou.wav",
    "bell": FREEDESKTOP / "bell.oga",
    "phone": FREEDESKTOP / "phone-incoming-call.oga",
}
LONG = ASTERISK / "invalid.wav"  # 4.1 s: three windows of 2 s at most


def _corpus() -> list[str]:
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    return [f"the sound of a {name}" for name in IMAGENET_CLASSNAMES] + [
        f"a recording of {name} in the next room" for name in IMAGENET_CLASSNAMES
    ]


def save_hf_clap(folder: Path, *, fused: bool = False, seed: int = 0) -> Path:
    """A tiny random ClapModel with a byte-level BPE tokenizer (RoBERTa's kind, trained on the
    spot with `tokenizers`) and a ClapFeatureExtractor at 48 kHz, all saved in `folder`."""
    from tokenizers import ByteLevelBPETokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    # RoBERTa's special tokens, in its order: <s>=0, <pad>=1, </s>=2.
    bpe.train_from_iterator(
        _corpus(), vocab_size=600, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    )
    bpe.save_model(str(folder))  # vocab.json + merges.txt, read back as a RobertaTokenizer
    tokenizer = transformers.RobertaTokenizer.from_pretrained(folder, model_max_length=64)
    tokenizer.save_pretrained(folder)
    transformers.ClapFeatureExtractor(
        feature_size=16,
        sampling_rate=RATE,
        max_length_s=WINDOW_S,
        # LAION's unfused checkpoints crop ("rand_trunc"), the fused ones fuse 4 spectrograms.
        truncation="fusion" if fused else "rand_trunc",
    ).save_pretrained(folder)
    config = transformers.ClapConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 66,  # 64 tokens after RoBERTa's padding offset
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        },
        audio_config={
            # A 64x64 "image" of 16 mel bands (4 x 16 by 256 / 4 frames), 2 Swin stages.
            "spec_size": 64,
            "num_mel_bins": 16,
            "window_size": 4,
            "patch_size": 4,
            "patch_stride": [4, 4],
            "depths": [1, 1],
            "num_attention_heads": [2, 2],
            "patch_embeds_hidden_size": 16,
            "hidden_size": 32,
            "enable_fusion": fused,
            "fusion_type": "aff_2d" if fused else None,
        },
        projection_dim=DIM,
    )
    torch.manual_seed(seed)
    model = transformers.ClapModel(config)
    with torch.no_grad():
        model.logit_scale_a.fill_(float(np.log(LOGIT_SCALE_A)))
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("clap")
    return {
        "unfused": save_hf_clap(root / "unfused"),
        "fused": save_hf_clap(root / "fused", fused=True, seed=1),
    }


@pytest.fixture(scope="module")
def encoders(folders):
    return {kind: load_model(f"hf:{folder}") for kind, folder in folders.items()}


@pytest.fixture(scope="module")
def references(folders):
    """transformers' own model, tokenizer and feature extractor from each folder."""
    return {
        kind: {
            "model": transformers.ClapModel.from_pretrained(folder).eval(),
            "tokenizer": transformers.AutoTokenizer.from_pretrained(folder),
            "features": transformers.ClapFeatureExtractor.from_pretrained(folder),
        }
        for kind, folder in folders.items()
    }


def _clip(path: Path) -> np.ndarray:
    return load_audio(path, rate=RATE).samples


def _reference_audio(ref, waves: list[np.ndarray]) -> np.ndarray:
    """transformers' vectors of whole clips that fit the window, none marked "longer"."""
    inputs = ref["features"](waves, sampling_rate=RATE, return_tensors="pt")
    longer = torch.zeros((len(waves), 1), dtype=torch.bool)
    with torch.no_grad():
        out = ref["model"].get_audio_features(
            input_features=inputs["input_features"].float(), is_longer=longer
        )
    return torch.nn.functional.normalize(out.pooler_output, dim=-1).numpy()


# -- loading ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["unfused", "fused"])
def test_a_clap_folder_loads_as_text_and_audio(kind, encoders):
    encoder = encoders[kind]
    assert isinstance(encoder, ClapEncoder)
    assert encoder.modalities == frozenset({"text", "audio"})
    assert encoder.dim == DIM and encoder.audio_rate == RATE
    assert encoder.logit_scale == pytest.approx(LOGIT_SCALE_A, rel=1e-5)


def test_the_tokenizer_is_robertas_kind(references):
    tokenizer = references["unfused"]["tokenizer"]
    ids = tokenizer("the sound of a bell")["input_ids"]
    assert len(tokenizer) == 600 and 4 < len(ids) < 12
    assert ids[0] == tokenizer.bos_token_id == 0 and ids[-1] == tokenizer.eos_token_id == 2


def test_images_are_refused_with_the_usual_error(encoders, photos):
    with pytest.raises(UnsupportedModalityError, match="does not embed images"):
        encoders["unfused"].embed_images([photos[0].path])


# -- vectors ----------------------------------------------------------------------------------


def test_shapes_dtype_and_unit_rows(encoders):
    encoder = encoders["unfused"]
    texts = encoder.embed_texts(TEXTS)
    sounds = encoder.embed_audio([str(p) for p in SOUNDS.values()])
    assert texts.shape == (len(TEXTS), DIM) and sounds.shape == (len(SOUNDS), DIM)
    for v in (texts, sounds):
        assert v.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


def test_texts_equal_get_text_features(encoders, references):
    ref = references["unfused"]
    inputs = ref["tokenizer"](TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = ref["model"].get_text_features(**inputs).pooler_output
    expected = torch.nn.functional.normalize(expected, dim=-1).numpy()
    np.testing.assert_allclose(encoders["unfused"].embed_texts(TEXTS), expected, atol=1e-5)


def test_a_text_longer_than_the_positions_is_cut_there(encoders, references):
    ref = references["unfused"]
    long = "a bell rings in the tower of the old church while a dog barks next door " * 12
    inputs = ref["tokenizer"]([long], truncation=True, max_length=64, return_tensors="pt")
    assert inputs["input_ids"].shape[1] == 64 < len(ref["tokenizer"](long)["input_ids"])
    with torch.no_grad():
        expected = ref["model"].get_text_features(**inputs).pooler_output
    expected = torch.nn.functional.normalize(expected, dim=-1).numpy()
    np.testing.assert_allclose(encoders["unfused"].embed_texts([long]), expected, atol=1e-5)


@pytest.mark.parametrize("kind", ["unfused", "fused"])
def test_recordings_equal_get_audio_features(kind, encoders, references):
    """The backend really runs the model: the same features through transformers' ClapModel
    give the same vectors, for recordings decoded from WAV and Ogg at other rates."""
    waves = [_clip(p) for p in SOUNDS.values()]
    expected = _reference_audio(references[kind], waves)
    got = encoders[kind].embed_audio([str(p) for p in SOUNDS.values()])
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_different_recordings_give_different_vectors(encoders):
    vectors = encoders["unfused"].embed_audio([str(p) for p in SOUNDS.values()])
    cosines = vectors @ vectors.T
    off_diagonal = cosines[~np.eye(len(SOUNDS), dtype=bool)]
    assert off_diagonal.max() < 0.999, cosines


def test_a_fused_models_vector_does_not_depend_on_its_batch(encoders):
    """transformers' extractor marks one clip of an all-short batch "longer" at random, which
    changes a fusion model's vector; here every clip is embedded as the whole clip it is."""
    encoder = encoders["fused"]
    paths = [str(p) for p in SOUNDS.values()]
    together = encoder.embed_audio(paths, batch_size=len(paths))
    alone = np.concatenate([encoder.embed_audio([p]) for p in paths])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_the_callers_random_numbers_are_left_alone(encoders):
    np.random.seed(7)
    expected = np.random.random(3)
    np.random.seed(7)
    encoders["fused"].embed_audio([str(SOUNDS["bell"]), str(SOUNDS["phone"])])
    np.testing.assert_array_equal(np.random.random(3), expected)


@pytest.mark.parametrize("kind", ["unfused", "fused"])
def test_a_long_clip_is_the_mean_of_equal_windows(kind, encoders, references):
    """A clip longer than the window is not cropped at random: every part counts, the same
    every time."""
    encoder = encoders[kind]
    wave = _clip(LONG)
    assert len(wave) > 2 * WINDOW_S * RATE  # three windows
    windows = np.array_split(wave, 3)
    mean = _reference_audio(references[kind], windows).mean(axis=0)
    expected = mean / np.linalg.norm(mean)
    first = encoder.embed_audio([str(LONG)])[0]
    np.testing.assert_allclose(first, expected, atol=1e-4)
    np.testing.assert_array_equal(encoder.embed_audio([str(LONG)])[0], first)
    # Not any one window's vector: the whole clip was heard.
    crops = _reference_audio(references[kind], [w[: WINDOW_S * RATE] for w in windows])
    assert np.max(crops @ first) < 0.99999


# -- a collection of sounds -------------------------------------------------------------------


@pytest.fixture
def sound_folder(tmp_path):
    root = tmp_path / "sounds"
    root.mkdir()
    for name, path in SOUNDS.items():
        shutil.copy(path, root / f"{name}{path.suffix}")
    return root


def test_a_collection_indexes_sounds_and_text_finds_them(tmp_path, sound_folder, encoders):
    encoder = encoders["unfused"]
    with Collection.open(tmp_path / "db", encoder) as collection:
        report = collection.index([sound_folder])
        assert report.added == len(SOUNDS) and not report.skipped, report
        hits = collection.search("the sound of a bell", k=10, mode="vector")
        assert len(hits) == len(SOUNDS)
        assert {collection.get(h.id).kind for h in hits} == {"audio"}
        # The stored vectors are the model's: each score is the text-to-sound cosine.
        query = encoder.embed_texts(["the sound of a bell"])[0]
        for hit in hits:
            sound = encoder.embed_audio([hit.path])[0]
            assert hit.score == pytest.approx(float(query @ sound), abs=1e-4)
        # A recording as the query finds itself first.
        first = collection.search_audio(str(SOUNDS["phone"]), k=2)[0]
        assert Path(first.path).name == "phone.oga"
        assert first.score == pytest.approx(1.0, abs=1e-5)
    # Reopened by the name the collection recorded, the model loads from the folder again.
    with Collection.open(tmp_path / "db") as again:
        assert again.model_name == encoder.name
        assert len(again.search("a phone is ringing", k=10, mode="vector")) == len(SOUNDS)


def test_photos_are_left_out_for_a_model_that_only_hears(tmp_path, sound_folder, photos, encoders):
    """Photos beside the sounds are not scanned (nor skipped one by one); notes are read."""
    for photo in photos[:2]:
        shutil.copy(photo.path, sound_folder / f"{photo.name}.png")
    (sound_folder / "note.txt").write_text("the church bell rings at noon")
    with Collection.open(tmp_path / "db", encoders["unfused"]) as collection:
        report = collection.index([sound_folder])
        assert report.added == len(SOUNDS) + 1 and not report.skipped, report
        hits = collection.search("a bell", k=10, mode="vector")
        kinds = {Path(h.path).name: collection.get(h.id).kind for h in hits}
        assert kinds == {"note.txt": "text"} | {
            f"{name}{path.suffix}": "audio" for name, path in SOUNDS.items()
        }


# -- bad folders and options ------------------------------------------------------------------


def test_partial_weights_are_refused_not_filled_with_random(folders, tmp_path):
    from safetensors.torch import load_file, save_file

    partial = tmp_path / "partial"
    shutil.copytree(folders["unfused"], partial)
    weights = load_file(partial / "model.safetensors")
    dropped = sorted(k for k in weights if k.startswith("audio_model."))
    assert dropped
    save_file({k: v for k, v in weights.items() if k not in dropped}, partial / "model.safetensors")
    with pytest.raises(ModelLoadError, match="which would be random") as info:
        load_model(f"hf:{partial}")
    assert dropped[0] in str(info.value)


def test_a_missing_feature_extractor_is_a_load_error(folders, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(folders["unfused"], bare)
    (bare / "preprocessor_config.json").unlink()
    with pytest.raises(ModelLoadError, match=r"preprocessor_config\.json"):
        load_model(f"hf:{bare}")


def test_a_feature_extractor_of_the_other_kind_is_refused(folders, tmp_path):
    mixed = tmp_path / "mixed"
    shutil.copytree(folders["unfused"], mixed)
    shutil.copy(folders["fused"] / "preprocessor_config.json", mixed)
    with pytest.raises(ModelLoadError, match=r"truncation=.fusion.*without feature fusion"):
        load_model(f"hf:{mixed}")


def test_int8_is_not_offered(folders):
    with pytest.raises(InvalidInputError, match="not offered for CLAP"):
        load_model(f"hf:{folders['unfused']}", quantize="int8")


def test_unavailable_cuda_is_a_device_error(folders):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(DeviceError, match="'cuda'"):
        load_model(f"hf:{folders['unfused']}", device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_gives_the_cpu_vectors_in_float32(folders, encoders):
    gpu = load_model(f"hf:{folders['unfused']}", device="cuda")
    assert gpu.model.device.type == "cuda"
    paths = [str(p) for p in SOUNDS.values()]
    texts, sounds = gpu.embed_texts(TEXTS), gpu.embed_audio(paths)
    assert texts.dtype == sounds.dtype == np.float32
    np.testing.assert_allclose(texts, encoders["unfused"].embed_texts(TEXTS), atol=5e-3)
    np.testing.assert_allclose(sounds, encoders["unfused"].embed_audio(paths), atol=5e-3)


def test_a_clip_model_still_does_not_hear(tmp_path):
    clip = load_model(f"hf:{save_hf_clip(tmp_path / 'clip')}")
    with pytest.raises(UnsupportedModalityError, match="does not embed sounds"):
        clip.embed_audio([str(SOUNDS["bell"])])


# -- the hub ----------------------------------------------------------------------------------


def test_an_uncached_clap_repo_fails_fast_offline(offline_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "hub_reachable", no_network)
    error = error_within_guard(lambda: load_model("hf:laion/clap-htsat-unfused"))
    assert isinstance(error, ModelLoadError), error
    assert "HF_HUB_OFFLINE is set" in str(error) and "save_pretrained" in str(error)


def test_a_cached_clap_repo_loads_without_the_hub(folders, encoders, offline_cache, monkeypatch):
    import huggingface_hub.constants

    repo = "xmodal-test/tiny-clap"
    add_to_hf_cache(offline_cache, repo, {p.name: p for p in folders["unfused"].iterdir()})
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    model = load_model(f"hf:{repo}")
    assert isinstance(model, ClapEncoder) and model.name == f"hf:{repo}"
    bell = [str(SOUNDS["bell"])]
    np.testing.assert_array_equal(model.embed_audio(bell), encoders["unfused"].embed_audio(bell))
    listed = {i.name: i for i in backend.list_models()}
    assert listed[f"hf:{repo}"].available and listed[f"hf:{repo}"].dim == DIM
    assert "clap" in listed[f"hf:{repo}"].note
    known = listed["hf:laion/clap-htsat-unfused"]
    assert known.dim == 512 and not known.available
