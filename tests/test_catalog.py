"""The SQLite catalog: migrations, rows and vectors, transactions, meta."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from xmodal.catalog import MIGRATIONS, SCHEMA_VERSION, Catalog, FileRow
from xmodal.errors import CatalogError


@pytest.fixture
def catalog(tmp_path):
    c = Catalog(tmp_path / "catalog.sqlite")
    yield c
    c.close()


def row(name: bytes, digest: bytes = b"h" * 16, size: int = 10) -> FileRow:
    return FileRow(b"/photos/" + name, size, 1_000, digest, 64, 48, None)


def unit(seed: int, dim: int = 8) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def test_new_catalog_is_at_the_latest_version_in_wal_mode(tmp_path, catalog):
    db = sqlite3.connect(tmp_path / "catalog.sqlite")
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == len(MIGRATIONS)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"meta", "roots", "files", "vectors", "skipped"} <= tables
    indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "files_by_hash" in indexes
    assert any("files" in i for i in indexes - {"files_by_hash"})  # the UNIQUE index on path


def test_version_1_database_migrates_keeping_its_rows(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0] + "; PRAGMA user_version = 1;")
    db.execute(
        "INSERT INTO files (path, size, mtime_ns, hash, width, height)"
        " VALUES (x'2f612e706e67', 5, 7, x'00', 3, 4)"
    )
    db.execute("INSERT INTO vectors (id, vector) VALUES (1, ?)", (unit(0).tobytes(),))
    db.commit()
    db.close()

    catalog = Catalog(path)
    try:
        item = catalog.item(1)
        assert (item.path, item.size, item.width, item.height) == ("/a.png", 5, 3, 4)
        assert item.metadata == {} and item.caption is None
        np.testing.assert_array_equal(catalog.vectors([1])[1][0], unit(0))
        with catalog.transaction():
            catalog.record_skip(b"/bad.png", 1, 2, "empty file")
        assert catalog.skip_states()[b"/bad.png"].reason == "empty file"
    finally:
        catalog.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_newer_schema_is_refused_with_advice(tmp_path):
    path = tmp_path / "future.sqlite"
    sqlite3.connect(path).execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(CatalogError, match="upgrade xmodal"):
        Catalog(path)


def test_not_a_database_is_a_catalog_error(tmp_path):
    path = tmp_path / "catalog.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CatalogError, match="cannot open"):
        Catalog(path)


def test_insert_read_move_touch_delete(catalog):
    with catalog.transaction():
        a = catalog.insert_file(row(b"a.png", b"A" * 16), unit(1))
        b = catalog.insert_file(row(b"b.png", b"B" * 16), unit(2))
    assert catalog.count() == 2
    assert catalog.paths([a, b]) == {a: b"/photos/a.png", b: b"/photos/b.png"}
    ids, vectors = catalog.vectors()
    assert ids.tolist() == [a, b] and vectors.dtype == np.float32
    np.testing.assert_array_equal(vectors, np.stack([unit(1), unit(2)]))  # bit-exact

    with catalog.transaction():
        catalog.move_file(a, b"/photos/sub/a.png", 10, 2_000)
        catalog.touch_file(b, 11, 3_000)
    states = catalog.file_states()
    assert states[b"/photos/sub/a.png"].id == a
    assert (states[b"/photos/b.png"].size, states[b"/photos/b.png"].mtime_ns) == (11, 3_000)
    assert catalog.item(b).mtime == pytest.approx(3e-6)

    with catalog.transaction():
        assert catalog.delete_files([a, 999]) == 1
    assert catalog.count() == 1
    assert catalog.ids().tolist() == [b]  # the vector went with its file
    assert catalog.item(a) is None


def test_copy_shares_the_source_vector(catalog):
    with catalog.transaction():
        a = catalog.insert_file(row(b"a.png"), unit(3))
        b = catalog.insert_copy(row(b"copy.png"), a)
    ids, vectors = catalog.vectors([b, a])
    assert ids.tolist() == [a, b]
    np.testing.assert_array_equal(vectors[0], vectors[1])


def test_ids_are_never_reused(catalog):
    with catalog.transaction():
        first = catalog.insert_file(row(b"a.png"), unit(0))
    with catalog.transaction():
        catalog.delete_files([first])
    with catalog.transaction():
        second = catalog.insert_file(row(b"b.png"), unit(0))
    assert second > first


def test_generation_counts_data_transactions_only(catalog):
    start = catalog.generation
    with catalog.transaction():
        catalog.insert_file(row(b"a.png"), unit(0))
    catalog.set_meta("index_generation", "1")
    with catalog.transaction():
        pass  # nothing written
    assert catalog.generation == start + 1


def test_a_failed_transaction_writes_nothing(catalog):
    with pytest.raises(RuntimeError), catalog.transaction():
        catalog.insert_file(row(b"a.png"), unit(0))
        raise RuntimeError("killed midway")
    assert catalog.count() == 0 and catalog.generation == 0


def test_writes_outside_a_transaction_are_refused(catalog):
    with pytest.raises(CatalogError, match="transaction"):
        catalog.insert_file(row(b"a.png"), unit(0))


def test_undecodable_paths_round_trip(catalog):
    name = b"/photos/caf\xe9\xff.png"
    with catalog.transaction():
        item_id = catalog.insert_file(FileRow(name, 1, 1, b"h", 1, 1), unit(0))
    assert catalog.paths([item_id])[item_id] == name
    assert catalog.item_at(name).path.encode("utf-8", "surrogateescape") == name


def test_skips_are_remembered_and_cleared_by_a_later_insert(catalog):
    with catalog.transaction():
        catalog.record_skip(b"/photos/a.png", 3, 4, "truncated")
    assert catalog.skip_states()[b"/photos/a.png"].reason == "truncated"
    with catalog.transaction():
        catalog.insert_file(row(b"a.png"), unit(0))
    assert catalog.skip_states() == {}


def test_meta_binding_keeps_the_first_value(catalog):
    catalog.set_meta("model", "lite", only_if_missing=True)
    catalog.set_meta("model", "fake:32", only_if_missing=True)
    assert catalog.meta("model") == "lite"
    catalog.set_meta("model", "fake:32")
    assert catalog.meta("model") == "fake:32"
    assert catalog.meta("missing") is None


def test_roots_and_metadata(catalog):
    with catalog.transaction():
        catalog.add_roots([b"/photos", b"/more", b"/photos"])
        item_id = catalog.insert_file(row(b"a.png"), unit(0))
        assert catalog.set_metadata(item_id, {"album": "summer", "stars": 4})
        assert not catalog.set_metadata(item_id + 1, {})
    assert catalog.roots() == [b"/more", b"/photos"]
    assert catalog.item(item_id).metadata == {"album": "summer", "stars": 4}


def test_another_connections_commits_show_in_data_version_and_not_inside_a_snapshot(tmp_path):
    reader, writer = Catalog(tmp_path / "c.sqlite"), Catalog(tmp_path / "c.sqlite")
    try:
        before, own = reader.data_version(), writer.data_version()
        with writer.transaction():
            writer.insert_file(row(b"a.png"), unit(0))
        assert writer.data_version() == own  # its own commits do not count
        assert reader.data_version() != before
        with reader.reading():
            generation, ids = reader.generation, reader.ids()
            with writer.transaction():  # WAL: a reader's snapshot never blocks a writer
                writer.insert_file(row(b"b.png", b"g" * 16), unit(1))
            with reader.reading():  # nested: the same snapshot
                assert (reader.generation, reader.ids().tolist()) == (generation, ids.tolist())
            with pytest.raises(CatalogError, match="nest"):
                reader.transaction().__enter__()
        assert reader.generation == generation + 1 and reader.count() == 2
        assert reader.file_state(b"/photos/b.png").hash == b"g" * 16
        assert reader.file_state(b"/photos/none.png") is None
        assert reader.id_with_hash(b"g" * 16) == reader.file_state(b"/photos/b.png").id
        assert reader.id_with_hash(b"x" * 16) is None
    finally:
        reader.close()
        writer.close()
