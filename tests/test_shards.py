"""Parquet embedding shards: written and read back exactly, imported into a collection without
encoding, refused when they come from another model or dimension. No Ray here (test_ray.py)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

pytest.importorskip("pyarrow")

from xmodal.catalog import FileRow
from xmodal.cli import main
from xmodal.distributed.importer import import_shards
from xmodal.distributed.shards import (
    MANIFEST,
    ShardWriter,
    read_manifest,
    read_shards,
)
from xmodal.engine.collection import Collection
from xmodal.errors import InvalidInputError, ModelMismatchError


@pytest.fixture(scope="module")
def folder(tmp_path_factory, photos):
    """Five real photos, one with a caption beside it."""
    out = tmp_path_factory.mktemp("five")
    for photo in photos[:5]:
        shutil.copy(photo.path, out / photo.path.name)
    (out / photos[0].path.with_suffix(".txt").name).write_text("a caption")
    return out


@pytest.fixture(scope="module")
def local(tmp_path_factory, folder, lite):
    """The folder indexed in process: what an import must equal."""
    collection = Collection.open(tmp_path_factory.mktemp("local") / "db", lite)
    collection.index([folder])
    yield collection
    collection.close()


def _rows_of(folder, encoder) -> tuple[list[FileRow], np.ndarray]:
    """What an encoding job writes for the images in folder, made here by hand."""
    rows = []
    paths = sorted(p for p in folder.iterdir() if p.suffix == ".png")
    for path in paths:
        st = path.stat()
        data = path.read_bytes()
        with Image.open(path) as image:
            width, height = image.size
        caption = (
            path.with_suffix(".txt").read_text() if path.with_suffix(".txt").exists() else None
        )
        digest = hashlib.blake2b(data, digest_size=16).digest()
        rows.append(
            FileRow(os.fsencode(path), st.st_size, st.st_mtime_ns, digest, width, height, caption)
        )
    return rows, encoder.embed_images(paths)


@pytest.fixture(scope="module")
def shards(tmp_path_factory, folder, lite):
    out = tmp_path_factory.mktemp("shards") / "s"
    rows, vectors = _rows_of(folder, lite)
    with ShardWriter(out, lite.name, lite.dim, roots=[str(folder)], rows_per_shard=2) as writer:
        writer.write(rows[:3], vectors[:3])
        writer.write(rows[3:], vectors[3:])
    return out


def test_rows_and_vectors_round_trip_across_shard_files(shards, folder, lite):
    rows, vectors = _rows_of(folder, lite)
    manifest = read_manifest(shards)
    assert (manifest.model, manifest.dim, manifest.count) == ("lite", lite.dim, 5)
    assert [s["count"] for s in manifest.shards] == [2, 2, 1]
    assert sorted(p.name for p in shards.iterdir()) == [
        MANIFEST,
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    read_rows, read_vectors = [], []
    for batch_rows, batch_vectors in read_shards(shards, batch_size=2):
        assert len(batch_rows) <= 2
        read_rows += batch_rows
        read_vectors.append(batch_vectors)
    assert read_rows == rows
    np.testing.assert_array_equal(np.concatenate(read_vectors), vectors)
    assert sorted(r.caption or "" for r in read_rows) == ["", "", "", "", "a caption"]


def test_import_equals_the_in_process_index_and_twice_adds_nothing(tmp_path, shards, local):
    with Collection.open(tmp_path / "imported", "lite") as imported:
        first = import_shards(imported, shards)
        assert (first.added, first.replaced, first.unchanged) == (5, 0, 0)
        again = import_shards(imported, shards)
        assert (again.added, again.replaced, again.unchanged) == (0, 0, 5)
        assert imported.count() == local.count() == 5
        for item_id in range(1, 6):
            mine, theirs = imported.get(item_id), local.get(item_id)
            assert (mine.path, mine.size, mine.width, mine.caption) == (
                theirs.path,
                theirs.size,
                theirs.width,
                theirs.caption,
            )
            np.testing.assert_allclose(imported.vector(item_id), local.vector(item_id), atol=1e-6)
        for query in ("a cat", "a rocket in the sky", "coffee"):
            mine, theirs = imported.search_text(query, k=3), local.search_text(query, k=3)
            assert [(h.id, h.path) for h in mine] == [(h.id, h.path) for h in theirs]
            # The two models may run on different thread counts (indexing vs query), which
            # changes float rounding in the last digits, not the ranking.
            np.testing.assert_allclose(
                [h.score for h in mine], [h.score for h in theirs], atol=1e-5
            )
        assert imported.roots == local.roots  # a later `xmodal index` rescans the folder
        # ... and finds nothing new to encode there.
        report = imported.index()
        assert (report.added, report.embedded, report.unchanged) == (0, 0, 5)


def test_shards_of_another_model_or_dimension_are_refused(tmp_path, shards, lite):
    with Collection.open(tmp_path / "fake", "fake:16") as other:
        with pytest.raises(ModelMismatchError, match="lite"):
            import_shards(other, shards)
        assert other.count() == 0
    # Same model name, other dimension: a manifest that lies is caught at the rows.
    liar = tmp_path / "liar"
    with ShardWriter(liar, "lite", 16) as writer:
        first, vectors = next(read_shards(shards))
        writer.write(first, vectors[:, :16])
    with Collection.open(tmp_path / "lite", lite) as collection:
        with pytest.raises(ModelMismatchError, match="16"):
            import_shards(collection, liar)
        assert collection.count() == 0


def test_unfinished_or_foreign_folders_are_refused(tmp_path, shards):
    with pytest.raises(InvalidInputError, match=r"no manifest\.json"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST).write_text(json.dumps({"format": "something else"}))
    with pytest.raises(InvalidInputError, match="not an xmodal embeddings manifest"):
        read_manifest(tmp_path)
    with pytest.raises(InvalidInputError, match="already holds shards"):
        ShardWriter(shards, "lite", 8)


def test_cli_import_creates_a_collection_of_the_shards_model(tmp_path, shards):
    runner = CliRunner()
    db = tmp_path / "db"
    result = runner.invoke(main, ["import", str(shards), "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "imported 5, replaced 0, unchanged 0; 5 items" in result.output
    result = runner.invoke(main, ["import", str(shards), "--db", str(db)])
    assert "imported 0, replaced 0, unchanged 5; 5 items" in result.output
    with Collection.open(db, create=False) as collection:
        assert collection.model_name == "lite"
    bad = runner.invoke(main, ["import", str(tmp_path), "--db", str(tmp_path / "other")])
    assert bad.exit_code == 1
    assert "error:" in bad.output and "Traceback" not in bad.output
    assert not (tmp_path / "other").exists()


def test_import_into_a_milvus_collection_searches_the_same(tmp_path, shards, local):
    pytest.importorskip("milvus_lite")
    from xmodal.index.milvus import milvus_spec

    with Collection.open(tmp_path / "db", "lite") as imported:
        imported.index([], index_kind=milvus_spec("milvus:index=flat", str(tmp_path / "v.db")))
        assert import_shards(imported, shards).added == 5
        assert imported._ann.current().kind == "milvus"
        for query in ("a cat", "a rocket in the sky"):
            mine = imported.search_text(query, k=3)
            theirs = local.search_text(query, k=3)
            assert [h.id for h in mine] == [h.id for h in theirs]
            np.testing.assert_allclose(
                [h.score for h in mine], [h.score for h in theirs], atol=1e-5
            )
