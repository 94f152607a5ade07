"""Model names -> backends, and the errors a user sees for names that cannot work."""

from __future__ import annotations

import pytest

from xmodal.errors import InvalidInputError, ModelNotFoundError
from xmodal.models import list_models, load_model
from xmodal.models.fake import FakeEncoder
from xmodal.models.registry import parse_name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("lite", ("lite", "lite")),
        ("lite-en", ("lite", "lite-en")),
        ("openclip:ViT-B-32", ("openclip", "ViT-B-32")),
        ("openclip:ViT-B-32/laion2b_s34b_b79k", ("openclip", "ViT-B-32/laion2b_s34b_b79k")),
        ("hf:openai/clip-vit-base-patch32", ("hf", "openai/clip-vit-base-patch32")),
        ("fake", ("fake", "")),
        ("fake:8", ("fake", "8")),
    ],
)
def test_parse_name(name, expected):
    assert parse_name(name) == expected


@pytest.mark.parametrize("name", ["", "  ", "openclip:", "hf:"])
def test_empty_names_are_invalid(name):
    with pytest.raises(InvalidInputError):
        parse_name(name)


def test_unknown_name_says_what_exists():
    with pytest.raises(ModelNotFoundError, match="openclip:ARCH"):
        load_model("clip-but-misspelt")


def test_default_comes_from_environment(monkeypatch):
    monkeypatch.setenv("XMODAL_MODEL", "fake:12")
    model = load_model()
    assert isinstance(model, FakeEncoder)
    assert model.dim == 12


def test_list_models_names_every_backend():
    infos = list_models()
    lite = [i for i in infos if i.name == "lite"]
    assert lite and lite[0].available and lite[0].dim
    # Hub tags are listed from open_clip's own table without loading or downloading anything.
    assert any(i.name.startswith("openclip:ViT-B-32/") and i.dim == 512 for i in infos)
    assert any(i.name == "hf:openai/clip-vit-base-patch32" for i in infos)


def test_canonical_name_makes_local_paths_absolute(tmp_path, monkeypatch):
    from xmodal.models.registry import canonical_name

    (tmp_path / "weights.pt").write_bytes(b"")
    (tmp_path / "clip").mkdir()
    monkeypatch.chdir(tmp_path)
    assert (
        canonical_name("openclip:ViT-B-32/weights.pt") == f"openclip:ViT-B-32/{tmp_path}/weights.pt"
    )
    assert canonical_name("openclip:ViT-B-32/./weights.pt") == canonical_name(
        f"openclip:ViT-B-32/{tmp_path / 'weights.pt'}"
    )
    assert canonical_name("hf:clip") == f"hf:{tmp_path / 'clip'}"
    # Not paths here: kept as typed.
    for name in (
        "lite",
        "openclip:ViT-B-32/laion2b_s34b_b79k",
        "openclip:ViT-B-32/random",
        "openclip:hf-hub:org/repo",
        "hf:openai/clip-vit-base-patch32",
    ):
        assert canonical_name(name) == name
