"""The Collection API on real photo files: indexing, incremental updates, search, dedup, repair.

Most tests use the fake encoder (vectors are colour histograms); the slow ones the real model.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from badfiles import make_bad_files
from xmodal.catalog import Catalog
from xmodal.engine.collection import INDEX_FILE, Collection
from xmodal.engine.indexer import Indexer
from xmodal.errors import (
    CollectionNotFoundError,
    ImageLoadError,
    InvalidInputError,
    ModelMismatchError,
)
from xmodal.index import load_index
from xmodal.models.fake import FakeEncoder
from xmodal.scan import scan


@pytest.fixture
def library(tmp_path, photos) -> Path:
    folder = tmp_path / "library"
    folder.mkdir()
    for p in photos:
        shutil.copy(p.path, folder / p.path.name)
    return folder


@pytest.fixture
def coll(tmp_path, fake_encoder):
    with Collection.open(tmp_path / "db", fake_encoder) as c:
        yield c


def vector_of(c: Collection, item_id: int) -> np.ndarray:
    return c._catalog.vectors([item_id])[1][0]


def item_at(c: Collection, path: Path):
    return c._catalog.item_at(os.fsencode(path))


def test_index_then_reindex_embeds_nothing(coll, library):
    first = coll.index([library])
    assert (first.added, first.embedded, first.skipped) == (14, 14, [])
    assert coll.count() == 14
    assert first.images_per_second > 0
    saved = (coll.db_path / INDEX_FILE).stat().st_mtime_ns
    again = coll.index([library])
    assert (again.added, again.embedded, again.unchanged, again.removed) == (0, 0, 14, 0)
    assert (coll.db_path / INDEX_FILE).stat().st_mtime_ns == saved  # not rewritten
    # No paths: every folder indexed before.
    assert coll.index().unchanged == 14


def test_progress_bar_goes_to_stderr_and_is_off_by_default(coll, library, capsys):
    coll.index([library / "chelsea.png"])
    assert capsys.readouterr() == ("", "")
    coll.index([library], progress=True)
    out, err = capsys.readouterr()
    assert out == "" and "image/s" in err and "13/13" in err


def test_bad_arguments_fail_before_any_work(coll, library):
    with pytest.raises(InvalidInputError, match="unknown index kind 'annoy'"):
        coll.index([library], index_kind="annoy")
    with pytest.raises(InvalidInputError, match="list of paths"):
        coll.index(library)
    assert coll.count() == 0


def test_changed_file_is_updated(coll, library):
    coll.index([library])
    before = item_at(coll, library / "coffee.png")
    Image.open(library / "coffee.png").transpose(Image.Transpose.ROTATE_90).save(
        library / "coffee.png"
    )
    report = coll.index([library])
    assert (report.updated, report.embedded, report.unchanged) == (1, 1, 13)
    after = item_at(coll, library / "coffee.png")
    assert (after.width, after.height) == (before.height, before.width)
    assert coll.count() == 14


def test_touched_file_is_not_re_embedded(coll, library):
    coll.index([library])
    os.utime(library / "moon.png", ns=(1, 1))
    report = coll.index([library])
    assert (report.unchanged, report.embedded, report.updated) == (14, 0, 0)
    assert coll.index([library]).unchanged == 14  # the new mtime was remembered


def test_deleted_file_is_removed(coll, library):
    coll.index([library])
    (library / "horse.png").unlink()
    report = coll.index([library])
    assert (report.removed, report.embedded) == (1, 0)
    assert coll.count() == 13
    assert all("horse" not in h.path for h in coll.search_text("anything", k=20))


def test_moved_file_keeps_its_id_and_vector(coll, library):
    coll.index([library])
    old = item_at(coll, library / "chelsea.png")
    old_vector = vector_of(coll, old.id)
    (library / "cats").mkdir()
    (library / "chelsea.png").rename(library / "cats" / "my cat.png")
    report = coll.index([library])
    assert (report.moved, report.embedded, report.removed, report.added) == (1, 0, 0, 0)
    new = item_at(coll, library / "cats" / "my cat.png")
    assert new.id == old.id
    np.testing.assert_array_equal(vector_of(coll, new.id), old_vector)
    assert item_at(coll, library / "chelsea.png") is None


def test_copy_reuses_the_stored_vector(coll, library):
    coll.index([library])
    shutil.copy(library / "rocket.png", library / "rocket copy.png")
    report = coll.index([library])
    assert (report.added, report.embedded) == (1, 0)
    original = item_at(coll, library / "rocket.png")
    copy = item_at(coll, library / "rocket copy.png")
    assert copy.id != original.id
    assert (copy.width, copy.height) == (original.width, original.height)
    np.testing.assert_array_equal(vector_of(coll, copy.id), vector_of(coll, original.id))


def test_identical_new_files_in_one_run_are_embedded_once(coll, library):
    for i in range(3):
        shutil.copy(library / "clock.png", library / f"clock{i}.png")
    report = coll.index([library])
    assert (report.added, report.embedded) == (17, 14)


def test_sidecar_caption_and_item_fields(coll, library):
    (library / "chelsea.txt").write_text("  Chelsea on the sofa \n", encoding="utf-8")
    coll.index([library])
    item = item_at(coll, library / "chelsea.png")
    assert item.caption == "Chelsea on the sofa"
    assert coll.get(item.id) == item
    with Image.open(library / "chelsea.png") as im:
        assert (item.width, item.height) == im.size
    assert item.size == (library / "chelsea.png").stat().st_size
    assert coll.get(10_000) is None


def test_model_mismatch_says_how_to_fix_it(tmp_path, library):
    db = tmp_path / "db"
    with Collection.open(db, FakeEncoder(32)) as c:
        c.index([library])
    with pytest.raises(ModelMismatchError, match=r"xmodal index --db NEWDIR --model lite"):
        Collection.open(db, "lite")  # refused before any weights load
    with pytest.raises(ModelMismatchError, match="--model fake:32"):
        Collection.open(db, FakeEncoder(16))
    with Collection.open(db) as c:  # no model: the one it was built with
        assert (c.model_name, c.dim) == ("fake:32", 32)
        assert c.search_image(library / "horse.png", k=1)[0].path.endswith("horse.png")


def test_missing_collection_without_create(tmp_path):
    with pytest.raises(CollectionNotFoundError, match="xmodal index --db"):
        Collection.open(tmp_path / "nothing", create=False)
    assert not (tmp_path / "nothing").exists()


def test_empty_collection_answers_without_loading_the_model(tmp_path):
    # A model name that would fail to load: nothing here may try.
    with Collection.open(tmp_path / "db", "hf:/no/such/checkpoint") as c:
        assert c.count() == 0
        assert c.search_text("a cat") == []
        assert c.search_vectors(np.eye(4, dtype=np.float32)) == [[], [], [], []]
        assert c.near_duplicates() == []


def test_unchanged_reindex_does_not_load_the_model(tmp_path, library):
    db = tmp_path / "db"
    with Collection.open(db, FakeEncoder(32)) as c:
        c.index([library])
    # Same name, but the registry would give a 32-d fake: make loading observable instead.
    with Collection.open(db) as c:
        report = c.index([library])
        assert report.unchanged == 14 and c._encoder is None


def test_search_best_first_k_and_threshold(coll, library):
    coll.index([library])
    hits = coll.search_image(library / "astronaut.png", k=5)
    assert len(hits) == 5
    assert hits[0].path == str(library / "astronaut.png")
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    everything = coll.search_image(library / "astronaut.png", k=100)
    assert len(everything) == 14
    cut = everything[6].score
    above = coll.search_image(library / "astronaut.png", k=100, threshold=cut)
    assert above == [h for h in everything if h.score >= cut]
    text_hits = coll.search_text("red sky", k=3)
    assert len(text_hits) == 3
    assert [h.score for h in text_hits] == sorted((h.score for h in text_hits), reverse=True)
    batch = coll.search_vectors(coll.encoder.embed_images([library / "moon.png"] * 2), k=2)
    assert len(batch) == 2 and batch[0] == batch[1] and batch[0][0].path.endswith("moon.png")


def test_metadata_filter(coll, library):
    coll.index([library])
    everything = coll.search_image(library / "astronaut.png", k=100)
    tagged = {h.id: i for i, h in enumerate(everything) if i % 3 == 0}
    for item_id, i in tagged.items():
        coll.set_metadata(item_id, {"album": "trip", "n": i, "fav": i % 2 == 0, "x y": "é"})
    hits = coll.search_image(library / "astronaut.png", k=100, where={"album": "trip"})
    assert [h.id for h in hits] == [h.id for h in everything if h.id in tagged]
    both = coll.search_image(library / "astronaut.png", k=100, where={"album": "trip", "n": 3})
    assert [h.id for h in both] == [everything[3].id]
    favs = coll.search_image(library / "astronaut.png", k=100, where={"fav": True})
    assert {h.id for h in favs} == {h.id for i, h in enumerate(everything) if i % 6 == 0}
    assert len(coll.search_text("x", k=100, where={"x y": "é"})) == len(tagged)
    assert coll.search_text("x", where={"album": "none"}) == []
    for bad in [{'a"b': 1}, {"album": None}, {"album": ["trip"]}, {"": 1}]:
        with pytest.raises(InvalidInputError):
            coll.search_text("x", where=bad)


def test_near_duplicates_groups_copies_and_nothing_else(coll, library):
    shutil.copy(library / "chelsea.png", library / "chelsea copy.png")
    # A smaller copy: the full-size original is the one to keep.
    Image.open(library / "coffee.png").resize((200, 150)).save(library / "coffee small.png")
    coll.index([library])
    groups = coll.near_duplicates(threshold=0.97)
    names = [{Path(h.path).name for h in [g.first, *g.members]} for g in groups]
    assert sorted(names, key=sorted) == [
        {"chelsea.png", "chelsea copy.png"},
        {"coffee.png", "coffee small.png"},
    ]
    coffee = next(g for g in groups if "coffee" in g.first.path)
    assert Path(coffee.first.path).name == "coffee.png"  # the bigger one is kept
    assert all(m.score == pytest.approx(1.0, abs=1e-3) for g in groups for m in g.members)
    # An exact copy is a duplicate at any threshold below 1.
    assert len(coll.near_duplicates(threshold=0.9999)) == 2


def test_reopen_gives_the_same_results(tmp_path, library):
    db = tmp_path / "db"
    with Collection.open(db, FakeEncoder(32)) as c:
        c.index([library])
        before = c.search_image(library / "clock.png", k=14)
    with Collection.open(db) as c:
        assert c.search_image(library / "clock.png", k=14) == before


@pytest.mark.parametrize("damage", ["delete", "garbage"])
def test_a_lost_or_damaged_index_file_is_rebuilt(tmp_path, library, damage):
    db = tmp_path / "db"
    with Collection.open(db, FakeEncoder(32)) as c:
        c.index([library])
        before = c.search_image(library / "clock.png", k=14)
    if damage == "delete":
        (db / INDEX_FILE).unlink()
    else:
        (db / INDEX_FILE).write_bytes(b"\0" * 1000)
    with Collection.open(db) as c:
        assert c.search_image(library / "clock.png", k=14) == before
    assert load_index(db / INDEX_FILE).count() == 14  # and saved again


def test_a_stale_index_file_is_reconciled_on_open(tmp_path, library):
    db = tmp_path / "db"
    with Collection.open(db, FakeEncoder(32)) as c:
        c.index([library])
    stale = (db / INDEX_FILE).read_bytes()
    with Collection.open(db) as c:
        horse = item_at(c, library / "horse.png").id
        assert c.remove(horse) and not c.remove(horse)
    (db / INDEX_FILE).write_bytes(stale)  # as if killed before the save
    with Collection.open(db) as c:
        ids = {h.id for h in c.search_text("anything", k=100)}
        assert horse not in ids and len(ids) == 13 == c.count()


def test_add_file_and_remove(coll, library, tmp_path):
    coll.index([library])
    extra = tmp_path / "upload.png"
    Image.open(library / "flower.png").rotate(45).save(extra)
    item = coll.add_file(extra)
    assert item.path == str(extra) and coll.count() == 15
    assert coll.search_image(extra, k=1)[0].id == item.id
    assert coll.add_file(extra).id == item.id  # unchanged: nothing to do
    assert coll.remove(item.id)
    assert coll.count() == 14
    assert all(h.id != item.id for h in coll.search_image(extra, k=20))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(ImageLoadError, match=r"broken\.png"):
        coll.add_file(tmp_path / "broken.png")
    with pytest.raises(ImageLoadError, match=r"missing\.png"):
        coll.add_file(tmp_path / "missing.png")


def test_prepared_files_are_stored_replaced_and_shared_like_indexed_ones(coll, library, tmp_path):
    coll.index([library])
    extra = tmp_path / "upload.png"
    Image.open(library / "flower.png").rotate(45).save(extra)
    prepared = coll.prepare_file(extra)  # no catalog row yet: preparing writes nothing
    assert coll.count() == 14 and prepared.row.width == Image.open(extra).width
    (vector,) = coll.encoder.embed_prepared([prepared.pixels])
    with pytest.raises(InvalidInputError, match="32"):
        coll.add_prepared(prepared, vector[:5])
    assert coll.count() == 14  # refused before anything was written
    item = coll.add_prepared(prepared, vector)
    assert coll.search_image(extra, k=1)[0].id == item.id
    # New bytes at the same path replace the row; a copy of an indexed file shares its vector.
    Image.open(library / "horse.png").save(extra)
    again = coll.prepare_file(extra)
    replaced = coll.add_prepared(again, coll.encoder.embed_prepared([again.pixels])[0])
    assert replaced.id != item.id and coll.get(item.id) is None and coll.count() == 15
    horse = item_at(coll, library / "horse.png").id
    np.testing.assert_array_equal(vector_of(coll, replaced.id), vector_of(coll, horse))
    assert {h.id for h in coll.search_image(extra, k=2)} == {horse, replaced.id}


def test_db_path_is_absolute_and_path_containment_resolves_links(tmp_path, library, monkeypatch):
    monkeypatch.chdir(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    Image.new("RGB", (20, 10), "red").save(outside / "secret.png")
    (library / "link.png").symlink_to(outside / "secret.png")
    with Collection.open("db", FakeEncoder(32)) as c:
        assert c.db_path == tmp_path / "db"
        c.index([library], follow_symlinks=True)
        assert c.contains_path(library / "clock.png") and c.contains_path("library/clock.png")
        assert not c.contains_path(outside / "secret.png")
        assert not c.contains_path(library / "link.png")  # lies outside once resolved
        link = item_at(c, library / "link.png")
        assert c.servable_path(link) is None
        clock = item_at(c, library / "clock.png")
        assert c.servable_path(clock) == library / "clock.png"
        (library / "clock.png").unlink()
        assert c.servable_path(clock) is None  # gone from disk


def test_index_kind_can_be_forced_is_kept_and_goes_back_to_auto(tmp_path, library):
    db = tmp_path / "db"
    with Collection.open(db, FakeEncoder(32)) as c:
        c.index([library], index_kind="hnsw")
    assert load_index(db / INDEX_FILE).kind == "hnsw"
    with Collection.open(db) as c:
        assert c.search_image(library / "coins.png", k=1)[0].path.endswith("coins.png")
        c.index([library])  # no kind given: the last choice stays
    assert load_index(db / INDEX_FILE).kind == "hnsw"
    with Collection.open(db) as c:
        c.index([library], index_kind="auto")  # auto: 14 vectors are searched exactly
        c.index([library])
    assert load_index(db / INDEX_FILE).kind == "flat"


def test_index_parameters_are_applied_kept_and_changed_by_a_rebuild(tmp_path, library):
    db = tmp_path / "db"
    with Collection.open(db, FakeEncoder(32)) as c:
        c.index([library], index_kind="hnsw:m=8,ef_search=40")
    saved = load_index(db / INDEX_FILE)
    assert (saved.kind, saved.params["m"], saved.params["ef_search"]) == ("hnsw", 8, 40)
    stamp = (db / INDEX_FILE).stat().st_mtime_ns
    with Collection.open(db) as c:
        c.index([library], index_kind="hnsw:m=8")  # the same build: nothing rewritten
        c.index([library], index_kind="hnsw")  # no parameters given: they are kept
    assert (db / INDEX_FILE).stat().st_mtime_ns == stamp
    with Collection.open(db) as c:
        c.index([library], index_kind="hnsw:m=12")
        assert c.search_image(library / "coins.png", k=1)[0].path.endswith("coins.png")
    assert load_index(db / INDEX_FILE).params["m"] == 12
    # A lost index file is rebuilt from the stored vectors with the parameters it had.
    (db / INDEX_FILE).unlink()
    with Collection.open(db) as c:
        assert c.search_image(library / "coins.png", k=1)[0].path.endswith("coins.png")
    assert load_index(db / INDEX_FILE).params["m"] == 12
    with Collection.open(db) as c, pytest.raises(InvalidInputError, match="no parameter nlist"):
        c.index([library], index_kind="hnsw:nlist=4")


def test_bad_files_are_skipped_with_reasons_and_not_retried(coll, library, photos):
    corpus = make_bad_files(library / "bad", good_png=photos[0].path)
    report = coll.index([library])
    skipped = {os.fsencode(p): reason for p, reason in report.skipped}
    assert set(skipped) == set(corpus.bad)
    for path, expected in corpus.bad.items():
        assert expected in skipped[path].lower(), (path, skipped[path])
    assert coll.count() == 14 + len(corpus.good)
    for good in corpus.good:
        assert coll._catalog.item_at(good) is not None, good
    odd = next(p for p in corpus.good if b"\xff" in p)
    hit = next(h for h in coll.search_text("x", k=100) if h.id == coll._catalog.item_at(odd).id)
    assert os.fsencode(hit.path) == odd
    with open(hit.path, "rb") as f:  # the str path opens the file
        assert f.read(4) == b"\x89PNG"

    again = coll.index([library])
    assert again.embedded == 0 and again.unchanged == 14 + len(corpus.good)
    assert {os.fsencode(p) for p, _ in again.skipped} == set(corpus.bad)


def test_a_skipped_file_is_retried_only_once_it_changes(coll, library, photos):
    good = (library / "moon.png").read_bytes()
    victim = library / "later.png"
    victim.write_bytes(b"\0" * len(good))  # same size as the real image it will become
    assert coll.index([library]).skipped[0][0] == str(victim)
    stamp = victim.stat().st_mtime_ns
    victim.write_bytes(good)
    os.utime(victim, ns=(stamp, stamp))  # size and mtime as before: not even opened
    report = coll.index([library])
    assert report.skipped and report.embedded == 0 and coll.count() == 14
    os.utime(victim, ns=(stamp + 10**9, stamp + 10**9))
    report = coll.index([library])
    assert not report.skipped and report.added == 1 and coll.count() == 15


def test_a_file_deleted_between_walk_and_read_is_skipped(tmp_path, library, fake_encoder):
    found = scan([library])
    (library / "camera.png").unlink()
    catalog = Catalog(tmp_path / "catalog.sqlite")
    try:
        indexer = Indexer(catalog, lambda: fake_encoder, batch_size=4, workers=2)
        report = indexer.run(found.files, scope=found.roots)
    finally:
        catalog.close()
    assert report.added == 13
    assert report.skipped == [(str(library / "camera.png"), report.skipped[0][1])]
    assert "not found" in report.skipped[0][1]


def test_a_missing_root_is_reported_and_its_items_kept(tmp_path, library, coll):
    coll.index([library])
    moved_away = tmp_path / "unmounted"
    library.rename(moved_away)
    report = coll.index()
    assert "no such file" in report.skipped[0][1] and report.removed == 0
    assert coll.count() == 14


@pytest.fixture(scope="module")
def lite_collection(tmp_path_factory, photos, lite):
    folder = tmp_path_factory.mktemp("lite_library")
    for p in photos:
        shutil.copy(p.path, folder / p.path.name)
    # A resized, re-encoded JPEG copy of one photo, for near-duplicates.
    jpeg = io.BytesIO()
    Image.open(folder / "chelsea.png").convert("RGB").resize((300, 200)).save(
        jpeg, format="JPEG", quality=70
    )
    (folder / "chelsea small.jpg").write_bytes(jpeg.getvalue())
    with Collection.open(tmp_path_factory.mktemp("lite_db"), lite) as c:
        report = c.index([folder])
        assert report.embedded == 15
        yield c


@pytest.mark.slow
@pytest.mark.parametrize("query", ["a cat", "बिल्ली की फोटो"])
def test_lite_finds_the_cat(lite_collection, query):
    hits = lite_collection.search_text(query, k=3)
    assert Path(hits[0].path).stem.startswith("chelsea")


@pytest.mark.slow
def test_lite_near_duplicates_find_a_resized_jpeg_and_nothing_unrelated(lite_collection):
    groups = lite_collection.near_duplicates(threshold=0.95)
    assert len(groups) == 1
    assert Path(groups[0].first.path).name == "chelsea.png"
    assert [Path(m.path).name for m in groups[0].members] == ["chelsea small.jpg"]
