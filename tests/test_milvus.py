"""The Milvus index on real milvus-lite: agreement with FAISS, index types, the saved pointer,
`xmodal index --index milvus`, and `migrate` (no encoding, resumable, kept after a restart).

The collection: lite-en text embeddings of 5,000 words from /usr/share/dict/words, stored in
the catalog as items' vectors (the model is real; only the image files are left out).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from xmodal.catalog import Catalog, FileRow
from xmodal.cli import main
from xmodal.engine.collection import CATALOG_FILE, INDEX_FILE, Collection
from xmodal.errors import InvalidInputError, RemoteIndexError
from xmodal.filters import parse_terms
from xmodal.index import IndexFileError, create_index, load_index
from xmodal.index.milvus import MilvusIndex, milvus_spec
from xmodal.models.base import Encoder

pytest.importorskip("milvus_lite")

WORDS = Path("/usr/share/dict/words")
N = 5000
QUERIES = 200


class RefusesToEncode(Encoder):
    """Stands in for lite-en where nothing may be encoded: any embed call fails the test."""

    name, dim, modalities = "lite-en", 384, ("text", "image")

    def _encode_texts(self, texts):
        raise AssertionError(f"encoded {len(texts)} texts")

    def _encode_images(self, images):
        raise AssertionError(f"encoded {len(images)} images")


@pytest.fixture(scope="module")
def words():
    if not WORDS.exists():
        pytest.skip("needs the wamerican word list")
    return sorted({w.strip() for w in WORDS.read_text().split() if w.isalpha() and w.islower()})


@pytest.fixture(scope="module")
def embedded(words, one_torch_thread):
    """(vectors [N, 384], queries [QUERIES, 384]): lite-en on every 7th word, queries between."""
    from xmodal.models import load_model

    model = load_model("lite-en")
    chosen = words[::7][:N]
    others = words[3::7][:QUERIES]
    return model.embed_texts(chosen), model.embed_texts(others)


@pytest.fixture(scope="module")
def word_db(tmp_path_factory, embedded):
    """A collection folder whose catalog holds the N word vectors and a saved FAISS flat index."""
    vectors, _ = embedded
    db = tmp_path_factory.mktemp("words") / "db"
    with Collection.open(db, RefusesToEncode()):
        pass
    catalog = Catalog(db / CATALOG_FILE)
    with catalog.transaction():
        for i, vector in enumerate(vectors):
            digest = i.to_bytes(8, "little") * 4
            row = FileRow(f"/words/{i}.png".encode(), 100 + i, 0, digest, 8, 8)
            catalog.insert_file(row, vector)
    catalog.close()
    with Collection.open(db, RefusesToEncode()) as c:
        c.move_index("flat")
    return db


def copy_db(word_db: Path, tmp_path: Path) -> Path:
    db = tmp_path / "db"
    shutil.copytree(word_db, db)
    return db


def top_ids(results) -> list[list[int]]:
    return [[h.id for h in hits] for hits in results]


def test_milvus_flat_and_faiss_flat_return_the_same_top_10(embedded, tmp_path):
    vectors, queries = embedded
    ids = np.arange(N, dtype=np.int64) * 3 + 1
    faiss_flat = create_index(384, "flat")
    milvus = create_index(384, "milvus", uri=str(tmp_path / "v.db"), batch_size=700)
    for index in (faiss_flat, milvus):
        index.add(ids, vectors)
    assert milvus.count() == N and milvus.exact
    want, got = faiss_flat.search(queries, 10), milvus.search(queries, 10)
    same = [np.array_equal(w.ids, g.ids) for w, g in zip(want, got)]
    assert np.mean(same) >= 0.95, np.mean(same)
    for w, g in zip(want, got):
        np.testing.assert_allclose(np.sort(g.scores), np.sort(w.scores), atol=1e-5)
    # A filter is an `id in [...]` expression; k hits come back when k are allowed.
    allowed = ids[::9]
    for w, g in zip(faiss_flat.search(queries, 10, allowed), milvus.search(queries, 10, allowed)):
        assert len(g) == 10 and np.isin(g.ids, allowed).all()
        assert len(set(w.ids) & set(g.ids)) >= 9
    milvus.close()


@pytest.mark.parametrize("index_type", ["hnsw", "ivf", "ivf-flat"])
def test_approximate_index_types_keep_recall_and_survive_a_reopen(index_type, embedded, tmp_path):
    vectors, queries = embedded
    ids = np.arange(N, dtype=np.int64)
    uri = str(tmp_path / "v.db")
    index = create_index(384, "milvus", uri=uri, index=index_type, nlist=64, nprobe=32)
    index.add(ids, vectors)
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    hits = index.search(queries, 10)
    recall = np.mean([len(set(h.ids) & set(e)) / 10 for h, e in zip(hits, exact)])
    assert recall >= 0.9 and not index.exact
    # A narrow filter still returns k: the short queries are answered exactly.
    few = index.search(queries[:5], 10, filter=ids[:40])
    assert all(len(h) == 10 and np.isin(h.ids, ids[:40]).all() for h in few)
    index.save(tmp_path / "pointer.xmi")
    index.close()
    loaded = load_index(tmp_path / "pointer.xmi")  # released on reopen: loaded again
    assert isinstance(loaded, MilvusIndex) and loaded.params["index"] == index_type
    assert loaded.count() == N
    # Rows not yet flushed are searched exactly; reopened, they sit in the built index.
    again = loaded.search(queries, 10)
    assert np.mean([len(set(h.ids) & set(e)) / 10 for h, e in zip(again, exact)]) >= 0.85
    loaded.close()


def test_the_saved_pointer_follows_milvus_and_refuses_a_dropped_collection(embedded, tmp_path):
    vectors, _ = embedded
    uri = str(tmp_path / "v.db")
    index = create_index(384, "milvus", uri=uri, collection="words")
    index.add(np.arange(100), vectors[:100])
    index.save(tmp_path / "p.xmi")
    index.remove(np.arange(10))  # after the save: Milvus, not the file's snapshot, is the truth
    loaded = load_index(tmp_path / "p.xmi")
    np.testing.assert_array_equal(loaded.ids(), np.arange(10, 100))
    loaded.drop()
    with pytest.raises(IndexFileError, match="gone"):
        load_index(tmp_path / "p.xmi")
    index.close()
    loaded.close()
    create_index(384, "milvus", uri=uri, collection="words").close()
    with pytest.raises(InvalidInputError, match="dimension 384, not 64"):
        create_index(64, "milvus", uri=uri, collection="words")


def test_bad_uris_and_names_are_clear_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("XMODAL_MILVUS_URI", raising=False)
    for kwargs, reason in [
        ({}, "needs a URI"),
        ({"uri": str(tmp_path / "vectors")}, "ending in .db"),
        ({"uri": str(tmp_path / "v.db"), "collection": "1 bad name"}, "not a valid"),
        ({"uri": str(tmp_path / "v.db"), "index": "annoy"}, "not one of"),
        ({"uri": str(tmp_path / "v.db"), "nlist": 0}, "positive"),
    ]:
        with pytest.raises(InvalidInputError, match=reason):
            create_index(8, "milvus", **kwargs)
    with pytest.raises(InvalidInputError, match="not 'hnsw'"):
        milvus_spec("hnsw", "./v.db")
    # Nothing listens on the discard port: a typed error naming the server, at once.
    with pytest.raises(RemoteIndexError, match=r"cannot open Milvus at http://127\.0\.0\.1:9"):
        create_index(8, "milvus", uri="http://127.0.0.1:9")


def test_pymilvus_is_imported_lazily_and_missing_names_the_extra(tmp_path):
    uri = str(tmp_path / "v.db")
    code = (
        "import sys; import xmodal.index as x; assert 'pymilvus' not in sys.modules; "
        f"sys.modules['pymilvus'] = None; x.create_index(8, 'milvus', uri={uri!r})"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 1 and "MissingExtraError" in result.stderr
    assert "pip install 'xmodal[milvus]'" in result.stderr


def test_one_process_at_a_time_opens_a_milvus_lite_file(tmp_path):
    uri = str(tmp_path / "v.db")
    held = create_index(8, "milvus", uri=uri)
    code = f"from xmodal.index import create_index; create_index(8, 'milvus', uri={uri!r})"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert other.returncode == 1 and RemoteIndexError.__name__ in other.stderr
    assert "another process" in other.stderr
    held.close()  # the last user lets go of the lock
    again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr


def test_migrate_onto_milvus_and_back_gives_identical_results_without_encoding(
    word_db, embedded, tmp_path
):
    _, queries = embedded
    db = copy_db(word_db, tmp_path)
    uri = str(tmp_path / "milvus" / "vectors.db")
    small = parse_terms(["size<600"])  # 500 of the items: the filter goes to Milvus as ids
    with Collection.open(db, RefusesToEncode()) as c:
        before = c.search_vectors(queries, 10)
        before_small = top_ids(c.search_vectors(queries, 10, where=small))
        assert c.move_index(milvus_spec(None, uri)) == N
        moved = c.search_vectors(queries, 10)
        moved_small = c.search_vectors(queries, 10, where=small)
    assert all(len(hits) == 10 and all(h.id <= 500 for h in hits) for hits in moved_small)
    assert np.mean([a == b for a, b in zip(before_small, top_ids(moved_small))]) >= 0.95
    assert load_index(db / INDEX_FILE).kind == "milvus"
    # After a restart (a new Collection, Milvus reopened and loaded) the same results.
    with Collection.open(db, RefusesToEncode()) as c:
        restarted = c.search_vectors(queries, 10)
        assert c.move_index("flat") == N
        back = c.search_vectors(queries, 10)
    for results in (moved, restarted, back):
        agree = np.mean([a == b for a, b in zip(top_ids(before), top_ids(results))])
        assert agree >= 0.95, agree
    assert top_ids(back) == top_ids(before)


def test_migrate_cli_killed_midway_resumes_and_index_keeps_milvus(word_db, embedded, tmp_path):
    _, queries = embedded
    db = copy_db(word_db, tmp_path)
    uri = str(tmp_path / "vectors.db")
    with Collection.open(db, RefusesToEncode()) as c:
        before = top_ids(c.search_vectors(queries, 10))
    cmd = [sys.executable, "-m", "xmodal", "migrate", "--db", str(db), "--to", uri]
    first = subprocess.Popen([*cmd, "--batch-size", "250"], stderr=subprocess.PIPE, text=True)
    for line in first.stderr:
        if line.startswith("moved 1000/"):
            os.kill(first.pid, signal.SIGKILL)
            break
    first.wait()
    assert first.returncode == -signal.SIGKILL
    with Collection.open(db, RefusesToEncode()) as c:  # still searching the old index
        assert load_index(db / INDEX_FILE).kind == "flat"
        assert top_ids(c.search_vectors(queries, 10)) == before
    second = subprocess.run([*cmd, "--batch-size", "250"], capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    moved = [line for line in second.stderr.splitlines() if line.startswith("moved ")]
    # Resumed: what the killed run had sent is not sent again.
    assert int(moved[0].split()[1].split("/")[0]) > 1000 and moved[-1] == f"moved {N}/{N} vectors"
    assert f"({N} vectors)" in second.stdout
    with Collection.open(db, RefusesToEncode()) as c:
        after = top_ids(c.search_vectors(queries, 10))
    assert np.mean([a == b for a, b in zip(before, after)]) >= 0.95
    bad = CliRunner().invoke(main, ["migrate", "--db", str(db), "--to", "auto"])
    assert bad.exit_code == 1 and "not auto" in bad.stderr


def test_index_command_on_milvus_is_kept_for_later_runs(photos, tmp_path, monkeypatch):
    library = tmp_path / "library"
    library.mkdir()
    for p in photos[:6]:
        shutil.copy(p.path, library / p.path.name)
    db, uri = str(tmp_path / "db"), str(tmp_path / "vectors.db")
    monkeypatch.chdir(tmp_path)

    def run(*args):
        result = CliRunner().invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.stderr
        return result

    run(
        "index",
        str(library),
        "--db",
        db,
        "-m",
        "fake",
        "--index",
        "milvus",
        "--milvus-uri",
        "vectors.db",
    )
    saved = load_index(Path(db) / INDEX_FILE)
    assert saved.kind == "milvus" and saved.params["uri"] == uri and saved.count() == 6
    saved.close()
    for p in photos[6:9]:
        shutil.copy(p.path, library / p.path.name)
    run("index", "--db", db)  # no --index: the collection keeps Milvus
    saved = load_index(Path(db) / INDEX_FILE)
    assert saved.kind == "milvus" and saved.count() == 9
    saved.close()
    found = run("search", "a cat", "--db", db, "-k", "3", "--json")
    assert len(json.loads(found.stdout)["results"]) == 3
    bad = CliRunner().invoke(main, ["index", "--db", db, "--index", "hnsw", "--milvus-uri", uri])
    assert bad.exit_code == 2 and "milvus index kind" in bad.stderr
