"""Generate and rerank through a real diffusers pipeline: a tiny randomly initialised Stable
Diffusion (UNet, VAE, CLIP text encoder with the real CLIP tokenizer) built and saved here with
save_pretrained, as users save theirs, then loaded by name as "diffusers:DIR"."""

from __future__ import annotations

import contextlib
import itertools
import shutil
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from checkpoints import CLIP_CONTEXT, save_hf_clip, write_clip_bpe_vocab  # noqa: E402
from offline import OFFLINE_WAYS, cut_off, error_within_guard, no_network  # noqa: E402
from xmodal.engine.query import combine  # noqa: E402
from xmodal.errors import (  # noqa: E402
    DeviceError,
    InvalidInputError,
    ModelLoadError,
    ModelNotFoundError,
    UnsupportedModalityError,
)
from xmodal.generate import rerank  # noqa: E402
from xmodal.models import hub, load_model  # noqa: E402
from xmodal.models.base import AUDIO, TEXT  # noqa: E402
from xmodal.models.fake import FakeEncoder  # noqa: E402

PROMPT = "a red lighthouse at night"
# The pipeline's own side: UNet sample_size 8 x the VAE's scale factor 2.
NATIVE_SIZE = 16
FAST = {"steps": 2, "size": NATIVE_SIZE}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def save_tiny_pipeline(folder, seed: int = 0):
    """A tiny random StableDiffusionPipeline saved in `folder` (about 16 MB, a second to build)."""
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    vocab = folder.parent / f"{folder.name}-vocab"
    vocab.mkdir(parents=True, exist_ok=True)
    write_clip_bpe_vocab(vocab)
    tokenizer = CLIPTokenizer.from_pretrained(vocab)
    # Without it the tokenizer's limit is "unbounded" and the pipeline cannot truncate.
    tokenizer.model_max_length = CLIP_CONTEXT
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 64),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=NATIVE_SIZE,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=2,
            vocab_size=len(tokenizer),
            max_position_embeddings=CLIP_CONTEXT,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    return save_tiny_pipeline(tmp_path_factory.mktemp("diffusers") / "tiny-sd")


@pytest.fixture(scope="module")
def generator(saved):
    return f"diffusers:{saved}"


@pytest.fixture(scope="module")
def pipeline(generator):
    return rerank.load_pipeline(generator, "cpu")


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    return save_hf_clip(tmp_path_factory.mktemp("clip") / "clip")


@pytest.fixture(scope="module")
def clip(clip_folder):
    return load_model(f"hf:{clip_folder}")


def pixels(ranked) -> list[np.ndarray]:
    return [np.asarray(r.image) for r in ranked]


def assert_ranked_by_own_cosine(ranked, encoder, query) -> None:
    # Recomputed one image at a time, apart from the batch that ranked them.
    own = np.array([float(encoder.embed_images([r.image])[0] @ query) for r in ranked])
    np.testing.assert_allclose([r.score for r in ranked], own, atol=1e-5)
    assert all(a >= b for a, b in itertools.pairwise(own)), own


# -- loading ----------------------------------------------------------------------------------


def test_saved_folder_loads_as_a_float32_pipeline_on_the_cpu(pipeline):
    assert type(pipeline).__name__ == "StableDiffusionPipeline"
    assert pipeline.unet.dtype == torch.float32 and pipeline.device.type == "cpu"


def test_a_folder_that_is_not_a_pipeline_is_a_load_error(clip_folder):
    # A transformers checkpoint is a model folder, but not a pipeline.
    with pytest.raises(ModelLoadError, match=r"model_index\.json") as error:
        rerank.load_pipeline(f"diffusers:{clip_folder}")
    assert "save_pretrained" in str(error.value)


def test_a_pipeline_without_a_prompt_is_refused(tmp_path):
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    unet = UNet2DModel(
        sample_size=8,
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
    )
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler()).save_pretrained(tmp_path / "ddpm")
    with pytest.raises(ModelLoadError, match="not a text-to-image pipeline"):
        rerank.load_pipeline(f"diffusers:{tmp_path / 'ddpm'}")


def test_a_pipeline_missing_its_weights_is_a_load_error(saved, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(saved, broken)
    (broken / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="could not load the pipeline"):
        rerank.load_pipeline(f"diffusers:{broken}")


def test_missing_folders_files_and_other_generators_are_refused(saved, tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        rerank.load_pipeline(f"diffusers:{tmp_path / 'nowhere'}")
    with pytest.raises(ModelNotFoundError, match="is a file"):
        rerank.load_pipeline(f"diffusers:{saved / 'model_index.json'}")
    for name in ("stable:x", "diffusers:", f"{saved}"):
        with pytest.raises(InvalidInputError, match="diffusers:MODEL_OR_DIR"):
            rerank.load_pipeline(name)


def test_unavailable_cuda_is_a_device_error(generator):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(DeviceError):
        rerank.load_pipeline(generator, "cuda")


@pytest.mark.parametrize("how", OFFLINE_WAYS)
def test_uncached_hub_name_fails_fast_offline(how, offline_cache, monkeypatch):
    with contextlib.ExitStack() as stack:
        expected = cut_off(how, monkeypatch, stack)
        error = error_within_guard(lambda: rerank.load_pipeline("diffusers:stabilityai/sd-turbo"))
    assert isinstance(error, ModelLoadError), error
    assert expected in str(error)
    assert "not in the local Hugging Face cache" in str(error)
    assert "save_pretrained" in str(error)


def test_cached_hub_repo_loads_without_the_hub(saved, pipeline, offline_cache, monkeypatch):
    import huggingface_hub.constants

    # Laid out as a download is: refs/main names the snapshot that holds the files.
    repo = offline_cache / "models--xmodal-test--tiny-sd"
    shutil.copytree(saved, repo / "snapshots" / "0123abcd")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(hub, "hub_reachable", no_network)
    cached = rerank.load_pipeline("diffusers:xmodal-test/tiny-sd", "cpu")
    for name, tensor in pipeline.unet.state_dict().items():
        assert torch.equal(cached.unet.state_dict()[name], tensor), name


# -- candidates -------------------------------------------------------------------------------


def test_n_candidates_come_back_ranked_by_the_encoders_cosine(generator, clip):
    started = time.perf_counter()
    ranked = rerank.generate_candidates(PROMPT, generator, clip, n=3, seed=5, **FAST)
    assert len(ranked) == 3
    assert sorted(r.seed for r in ranked) == [5, 6, 7]
    assert all(r.image.mode == "RGB" for r in ranked)
    # Distinct seeds, distinct images.
    arrays = pixels(ranked)
    assert not np.array_equal(arrays[0], arrays[1]) and not np.array_equal(arrays[1], arrays[2])
    assert_ranked_by_own_cosine(ranked, clip, clip.embed_texts([PROMPT])[0])
    print(f"3 candidates at {NATIVE_SIZE} px, 2 steps: {time.perf_counter() - started:.2f} s")


def test_lite_ranks_the_candidates(pipeline):
    lite = load_model("lite")
    ranked = rerank.generate_candidates(PROMPT, pipeline, lite, n=3, **FAST)
    assert len(ranked) == 3
    assert_ranked_by_own_cosine(ranked, lite, lite.embed_texts([PROMPT])[0])


def test_same_seed_same_images_and_each_seed_regenerates_its_image(pipeline, generator, clip):
    first = rerank.generate_candidates(PROMPT, generator, clip, n=3, seed=1, **FAST)
    again = rerank.generate_candidates(PROMPT, pipeline, clip, n=3, seed=1, **FAST)
    assert [r.seed for r in first] == [r.seed for r in again]
    for a, b in zip(pixels(first), pixels(again), strict=True):
        np.testing.assert_array_equal(a, b)
    # A candidate's seed alone, in a batch of one, draws the same image.
    alone = rerank.generate_candidates(PROMPT, pipeline, clip, n=1, seed=first[-1].seed, **FAST)
    np.testing.assert_array_equal(pixels(alone)[0], pixels(first)[-1])
    other = rerank.generate_candidates(PROMPT, pipeline, clip, n=1, seed=100, **FAST)
    assert not any(np.array_equal(pixels(other)[0], a) for a in pixels(first))


@pytest.mark.parametrize("size", [8, 24, 32, None])
def test_the_size_asked_is_honoured(size, pipeline, clip):
    ranked = rerank.generate_candidates(PROMPT, pipeline, clip, n=1, steps=1, size=size)
    side = NATIVE_SIZE if size is None else size
    assert ranked[0].image.size == (side, side)


def test_a_weighted_prompt_and_negatives_score_as_a_search_query(pipeline, clip):
    plain = rerank.generate_candidates(PROMPT, pipeline, clip, n=2, seed=3, **FAST)
    ranked = rerank.generate_candidates(
        f"{PROMPT}^2", pipeline, clip, n=2, seed=3, negative=["fog", "people"], **FAST
    )
    query = combine(clip.embed_texts([PROMPT, "fog", "people"]), [2.0, -1.0, -1.0])
    assert_ranked_by_own_cosine(ranked, clip, query)
    # The negatives reach the pipeline (its unconditional branch): the images change.
    plain_by_seed = {r.seed: np.asarray(r.image) for r in plain}
    for r in ranked:
        assert not np.array_equal(np.asarray(r.image), plain_by_seed[r.seed])


def test_progress_is_reported_per_batch(pipeline, clip):
    calls = []

    def report(done: int, n: int) -> None:
        calls.append((done, n))

    rerank.generate_candidates(
        PROMPT, pipeline, clip, n=3, batch_size=2, on_candidate=report, **FAST
    )
    assert calls == [(2, 3), (3, 3)]


# -- bad requests -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"n": 0}, "n must be"),
        ({"n": -2}, "n must be"),
        ({"n": 2.5}, "n must be"),
        ({"steps": 0}, "steps must be"),
        ({"size": 20}, "multiple of 8"),
        ({"size": 0}, "multiple of 8"),
        ({"prompt": "   "}, "empty prompt"),
        ({"prompt": "sea^-1"}, "positive"),
        ({"negative": ""}, "empty negative"),
    ],
)
def test_bad_requests_are_invalid_input(kwargs, says, pipeline, clip):
    args = {"prompt": PROMPT, "generator": pipeline, "encoder": clip, **FAST, **kwargs}
    with pytest.raises(InvalidInputError, match=says):
        rerank.generate_candidates(**args)


def test_bad_requests_fail_before_the_pipeline_loads(clip, tmp_path):
    # The folder does not exist: reaching the loader would raise ModelNotFoundError instead.
    with pytest.raises(InvalidInputError, match="n must be"):
        rerank.generate_candidates(PROMPT, f"diffusers:{tmp_path / 'x'}", clip, n=0)


class _Deaf(FakeEncoder):
    """A real encoder that does not see: texts and sounds only."""

    modalities = frozenset({TEXT, AUDIO})


def test_an_encoder_that_does_not_see_cannot_rank(pipeline):
    with pytest.raises(UnsupportedModalityError, match="images"):
        rerank.generate_candidates(PROMPT, pipeline, _Deaf(), n=1, **FAST)


# -- GPU --------------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_samples_in_float16_and_is_reproducible(generator, clip):
    on_gpu = rerank.load_pipeline(generator, "cuda")
    assert on_gpu.unet.dtype == torch.float16
    first = rerank.generate_candidates(PROMPT, on_gpu, clip, n=2, seed=4, **FAST)
    again = rerank.generate_candidates(PROMPT, on_gpu, clip, n=2, seed=4, **FAST)
    assert len(first) == 2
    for a, b in zip(pixels(first), pixels(again), strict=True):
        np.testing.assert_array_equal(a, b)
    assert_ranked_by_own_cosine(first, clip, clip.embed_texts([PROMPT])[0])
