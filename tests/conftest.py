"""Shared fixtures: real sample photos and encoders, built once per test session."""

from __future__ import annotations

import shutil

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
def photo_tree(tmp_path, photos):
    """A label tree of the 14 real sample photos: one folder per label."""
    for photo in photos:
        folder = tmp_path / "tree" / photo.label.replace(" ", "_")
        folder.mkdir(parents=True)
        shutil.copy(photo.path, folder / f"{photo.name}.png")
    return tmp_path / "tree"


@pytest.fixture
def fake_encoder():
    return FakeEncoder(dim=32)


@pytest.fixture(scope="session")
def lite():
    """The real default model, loaded once: most end-to-end tests need it."""
    from xmodal.models import load_model

    return load_model("lite")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run fastest on one thread; on shared, busy cores OpenMP's waiting threads
    make each forward pass of these models about 100x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
