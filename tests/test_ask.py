"""`ask`: retrieval from a collection of real images whose sidecar captions hold answers, the
prompt, and an answer from the packaged language model."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from xmodal.apps.ask import ask, build_prompt, retrieve
from xmodal.cli.ask import ask_cmd
from xmodal.engine.collection import Collection
from xmodal.errors import InvalidInputError

LIGHTHOUSE = "/usr/share/openclipart/png/buildings/lighthouse_matthew_gates_.png"
QUESTION = "What is the name of the lighthouse keeper?"


@pytest.fixture(scope="module")
def db(tmp_path_factory, photos, lite):
    root = tmp_path_factory.mktemp("ask")
    images = root / "images"
    images.mkdir()
    for photo in photos:
        shutil.copy(photo.path, images / photo.path.name)
    shutil.copy(LIGHTHOUSE, images / "lighthouse.png")
    (images / "lighthouse.txt").write_text("The lighthouse keeper's name is Ravi.")
    (images / "chelsea.txt").write_text("Chelsea the cat sleeps all day on the red sofa.")
    with Collection.open(root / "db", lite) as collection:
        collection.index([str(images)])
    return root / "db"


@pytest.fixture
def collection(db, lite):
    with Collection.open(db, lite, create=False) as c:
        yield c


def test_the_item_whose_caption_answers_comes_first(collection):
    sources = retrieve(collection, QUESTION, k=3)
    assert sources[0].path.endswith("lighthouse.png")
    assert "Ravi" in sources[0].caption
    assert [s.n for s in sources] == [1, 2, 3]
    assert sources[0].score > sources[1].score
    cat = retrieve(collection, "Where does the cat sleep?", k=2)
    assert cat[0].path.endswith("chelsea.png")


def test_the_image_and_text_weights_both_count(collection):
    # By the pictures alone the caption cannot lift the lighthouse above the cat photo...
    by_text = retrieve(collection, "Ravi", k=1, image_weight=0, text_weight=1)
    assert by_text[0].path.endswith("lighthouse.png")
    # ...while a query about what is shown finds the cat photo by its image.
    by_image = retrieve(collection, "a photo of a cat", k=1, image_weight=1, text_weight=0)
    assert by_image[0].path.endswith("chelsea.png")


def test_a_query_image_brings_its_neighbours(collection, photo_by_name):
    sources = retrieve(collection, "what is this?", k=2, image=photo_by_name["horse"].path)
    assert sources[0].path.endswith("horse.png")


def test_the_prompt_numbers_sources_and_caps_the_context(collection):
    sources = retrieve(collection, QUESTION, k=5)
    system, user = build_prompt(QUESTION, sources)
    assert "only" in system["content"] and "[n]" in system["content"]
    assert "[1] " in user["content"] and "Ravi" in user["content"]
    assert user["content"].rstrip().endswith("Answer (cite [n]):")
    short = build_prompt(QUESTION, sources, max_chars=80)[1]["content"]
    assert "[1] " in short and "[2] " not in short


def test_bad_questions_are_refused(collection):
    with pytest.raises(InvalidInputError):
        retrieve(collection, "   ")
    with pytest.raises(InvalidInputError):
        retrieve(collection, QUESTION, image_weight=0, text_weight=0)


def test_no_generate_prints_the_context(db):
    result = CliRunner().invoke(ask_cmd, [QUESTION, "--db", str(db), "--no-generate", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["sources"][0]["path"].endswith("lighthouse.png")
    assert "Ravi" in out["messages"][1]["content"]


def test_ask_about_an_image_gives_its_description_as_the_first_source(db, photo_by_name):
    path = str(photo_by_name["chelsea"].path)
    args = ["what animal is this?", "--db", str(db), "--image", path, "--no-generate", "--json"]
    result = CliRunner().invoke(ask_cmd, args)
    assert result.exit_code == 0, result.output
    first, second = json.loads(result.output)["sources"][:2]
    assert first["id"] is None and first["path"] == path and "cat" in first["caption"]
    assert second["path"].endswith("chelsea.png")  # the indexed copy, nearest to the image


def test_a_missing_collection_is_a_clear_error(tmp_path):
    from xmodal.cli.common import ErrorGroup

    group = ErrorGroup(commands={"ask": ask_cmd})  # as `xmodal` runs it: typed error, exit 1
    result = CliRunner().invoke(group, ["ask", "hi", "--db", str(tmp_path / "none")])
    assert result.exit_code == 1 and "no collection" in result.output


@pytest.mark.slow
def test_the_packaged_model_answers_from_the_sources(collection):
    from xmodal.llm import load_llm

    answer = ask(collection, QUESTION, load_llm(None), k=3)
    assert answer.text.strip()
    assert answer.sources[0].path.endswith("lighthouse.png")
    assert "Ravi" in answer.text
