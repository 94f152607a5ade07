"""Shared fixtures: real sample photos and encoders, built once per test session."""

from __future__ import annotations

import pytest

from xmodal.models.fake import FakeEncoder
from xmodal.samples import sample_photos


@pytest.fixture(scope="session")
def photos(tmp_path_factory):
    """The 14 real sample photos (scikit-image, scikit-learn, matplotlib) as PNG files."""
    return sample_photos(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="session")
def photo_by_name(photos):
    return {p.name: p for p in photos}


@pytest.fixture
def fake_encoder():
    return FakeEncoder(dim=32)


@pytest.fixture(scope="session")
def lite():
    """The real default model, loaded once: most end-to-end tests need it."""
    from xmodal.models import load_model

    return load_model("lite")
