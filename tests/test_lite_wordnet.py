"""lite's WordNet hypernym paths: the reader on Debian's real database, the shipped TSV, and the
"hyper" class-text styles."""

from __future__ import annotations

from pathlib import Path

import pytest

from xmodal.errors import InvalidInputError, MissingDataError
from xmodal.models.lite.classes import (
    ABSTRACT,
    BROAD,
    HYPERNYMS,
    HYPERNYMS_FILE,
    STYLES,
    broad_hypernym_words,
    class_text,
    class_texts,
    hypernym_words,
    hypernyms_tsv,
    imagenet_classes,
)
from xmodal.models.lite.wordnet import (
    DEFAULT_ROOT,
    NounDatabase,
    hypernym_path,
    imagenet_hypernyms,
    parse_noun_line,
)

needs_wordnet = pytest.mark.skipif(
    not (DEFAULT_ROOT / "data.noun").is_file(),
    reason="Debian's WordNet database is not installed (apt-get install wordnet-base)",
)

TIGER_CAT = "n02123159"
RACER = "n04037443"
BEACH_WAGON = "n02814533"
BANANA = "n07753592"
TABBY = "n02123045"


def by_synset(synset: str):
    return next(c for c in imagenet_classes() if c.synset == synset)


# -- the reader, on the real database --------------------------------------------------------------


@needs_wordnet
def test_shipped_tsv_equals_a_fresh_rebuild():
    synsets = [c.synset for c in imagenet_classes()]
    fresh = hypernyms_tsv(imagenet_hypernyms(synsets))
    assert HYPERNYMS_FILE.read_text(encoding="utf-8") == fresh


@needs_wordnet
def test_offsets_are_byte_offsets_into_data_noun():
    with (DEFAULT_ROOT / "data.noun").open("rb") as f:
        f.seek(1440764)
        line = f.readline().decode("utf-8")
    assert line.startswith("01440764 ")
    tench = parse_noun_line(line)
    assert tench.lemmas == ("tench", "Tinca tinca")
    assert tench.hypernyms == (1439121,)  # the `@` pointer; `#m` (member holonym) is not one


@needs_wordnet
def test_tiger_cat_is_a_cat_a_feline_a_carnivore_a_mammal_an_animal():
    path = hypernym_path(int(TIGER_CAT[1:]))
    for kind in ("cat", "feline", "carnivore", "mammal", "animal"):
        assert kind in path
    assert path[0] == "domestic cat"  # nearest first
    assert path[-1] == "entity"  # up to the root
    assert "tiger cat" not in path  # the synset itself is left out
    assert path.index("cat") < path.index("mammal") < path.index("animal")


@needs_wordnet
def test_race_car_and_beach_wagon_are_motor_vehicles():
    paths = imagenet_hypernyms([RACER, BEACH_WAGON])
    assert list(paths) == [RACER, BEACH_WAGON]
    for path in paths.values():
        assert "motor vehicle" in path
        assert "vehicle" in path
        assert "animal" not in path


@needs_wordnet
def test_banana_is_food():
    path = imagenet_hypernyms([BANANA])[BANANA]
    assert "edible fruit" in path
    assert "food" in path


@needs_wordnet
def test_instance_hypernyms_are_followed_first_pointer_first():
    # Mars (the planet) is an instance (`@i`) of a terrestrial planet and of a superior planet,
    # in that order: the path takes the first.
    with NounDatabase() as db:
        mars = db.synset(9347445)
        assert mars.lemmas == ("Mars", "Red Planet")
        assert mars.hypernyms == (9456369, 9450866)
        path = db.hypernym_path(9347445)
    assert path[:2] == ["terrestrial planet", "planet"]
    assert "superior planet" not in path


@needs_wordnet
def test_an_offset_that_is_not_a_synset_is_refused():
    with NounDatabase() as db, pytest.raises(InvalidInputError):
        db.synset(1440765)  # one byte into the tench's line
    with pytest.raises(InvalidInputError):
        imagenet_hypernyms(["01440764"])


def test_a_missing_database_names_the_debian_package(tmp_path: Path):
    with pytest.raises(MissingDataError, match="wordnet-base"):
        hypernym_path(1440764, root=tmp_path)
    with pytest.raises(MissingDataError, match="wordnet-base"):
        imagenet_hypernyms([TIGER_CAT], root=tmp_path / "absent")


# -- the shipped paths and the class texts ---------------------------------------------------------


def test_every_class_has_a_path_up_to_the_root():
    classes = imagenet_classes()
    assert len(classes) == 1000
    for c in classes:
        assert c.hypernyms, c.synset
        assert c.hypernyms[-1] == "entity"
        assert all(c.hypernyms)
        assert hypernym_words(c), c.synset  # something informative is left after ABSTRACT


def test_shipped_paths_match_the_class_order():
    lines = HYPERNYMS_FILE.read_text(encoding="utf-8").splitlines()
    assert [line.split("\t")[0] for line in lines] == [c.synset for c in imagenet_classes()]


def test_hyper_style_names_the_nearest_informative_ancestors():
    tabby = by_synset(TABBY)
    assert HYPERNYMS == 4
    assert class_text(tabby, "hyper") == (
        "tabby, tabby cat: a cat with a grey or tawny coat mottled with black; "
        "a kind of domestic cat, cat, feline, carnivore"
    )
    # Abstract top nodes are skipped: a crane (machine) is a lifting device, a device.
    crane = by_synset("n03126707")
    assert hypernym_words(crane) == ("lifting device", "device")
    assert not set(hypernym_words(crane, count=100)) & ABSTRACT
    assert hypernym_words(tabby, count=2) == ("domestic cat", "cat")
    assert hypernym_words(tabby, count=1, skip=frozenset()) == ("domestic cat",)


def test_hyper_broad_style_adds_the_broad_ancestors_further_up():
    tabby = by_synset(TABBY)
    assert broad_hypernym_words(tabby) == (
        "domestic cat",
        "cat",
        "feline",
        "carnivore",
        "mammal",
        "animal",
    )
    assert class_text(tabby, "hyper-broad") == (
        "tabby, tabby cat: a cat with a grey or tawny coat mottled with black; "
        "a kind of domestic cat, cat, feline, carnivore, mammal, animal"
    )
    police_van = by_synset("n03977966")
    assert broad_hypernym_words(police_van)[-1] == "vehicle"
    assert "food" in broad_hypernym_words(by_synset(BANANA))
    assert "vehicle" not in hypernym_words(police_van)  # beyond the 4 nearest


def test_broad_words_are_real_ancestors():
    reached = {a for c in imagenet_classes() for a in c.hypernyms}
    assert reached >= BROAD
    assert not BROAD & ABSTRACT


def test_every_style_renders_every_class():
    for style in STYLES:
        texts = class_texts(style)
        assert len(texts) == 1000
        assert all(texts)
    assert class_texts("hyper")[0].startswith(class_texts("gloss")[0] + "; a kind of cyprinid")
    with pytest.raises(InvalidInputError):
        class_text(imagenet_classes()[0], "hypernyms")
