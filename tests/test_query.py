"""Mixed weighted queries: texts and images, positive and negative, folded into one vector."""

from __future__ import annotations

import numpy as np
import pytest

from xmodal.engine.query import IMAGE, TEXT, QueryTerm, query_vector, split_weight
from xmodal.errors import InvalidInputError
from xmodal.models.base import l2_normalize


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("sunset^2", ("sunset", 2.0)),
        ("people^-0.5", ("people", -0.5)),
        ("beach", ("beach", 1.0)),
        ("a^b", ("a^b", 1.0)),
        ("^3", ("^3", 1.0)),
        ("photos/IMG^1.jpg", ("photos/IMG^1.jpg", 1.0)),
    ],
)
def test_split_weight(raw, expected):
    assert split_weight(raw) == expected


def test_one_text_is_just_its_embedding(fake_encoder):
    vec = query_vector(fake_encoder, [QueryTerm(TEXT, "a red car")])
    np.testing.assert_allclose(vec, fake_encoder.embed_text("a red car"), atol=1e-6)


def test_weighted_sum_of_texts_and_images(fake_encoder, photos):
    terms = [
        QueryTerm(TEXT, "sunset beach", 2.0),
        QueryTerm(IMAGE, photos[0].path, 1.0),
        QueryTerm(TEXT, "people", -0.5),
    ]
    expected = l2_normalize(
        2.0 * fake_encoder.embed_text("sunset beach")
        + fake_encoder.embed_image(photos[0].path)
        - 0.5 * fake_encoder.embed_text("people")
    )
    np.testing.assert_allclose(query_vector(fake_encoder, terms), expected, atol=1e-6)


@pytest.mark.parametrize(
    "terms",
    [
        [],
        [QueryTerm(TEXT, "cat", -1.0)],
        [QueryTerm(TEXT, "cat", 1.0), QueryTerm(TEXT, "cat", -1.0)],
        [QueryTerm(TEXT, "   ")],
    ],
)
def test_queries_that_cannot_work_are_typed_errors(fake_encoder, terms):
    with pytest.raises(InvalidInputError):
        query_vector(fake_encoder, terms)


@pytest.mark.parametrize(("kind", "weight"), [("smell", 1.0), (TEXT, 0.0), (TEXT, float("nan"))])
def test_bad_terms_are_refused(kind, weight):
    with pytest.raises(InvalidInputError):
        QueryTerm(kind, "x", weight)


@pytest.mark.slow
def test_adding_a_text_term_pulls_its_subject_up(lite, photos):
    """More of the cat photo plus "a rocket": the rocket climbs, the cat stays first."""
    by_name = {p.name: p for p in photos}
    names = [p.name for p in photos]
    vectors = lite.embed_images([p.path for p in photos])
    cat_photo = QueryTerm(IMAGE, by_name["chelsea"].path)

    def ranking(terms):
        return [names[i] for i in np.argsort(-(vectors @ query_vector(lite, terms)))]

    alone = ranking([cat_photo])
    mixed = ranking([cat_photo, QueryTerm(TEXT, "a rocket")])
    assert alone[0] == mixed[0] == "chelsea"
    assert mixed.index("rocket") < alone.index("rocket")
