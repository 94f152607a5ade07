"""One contract suite run against every index kind, plus the factory's choices.

Data: clustered vectors on a low-dimensional subspace (as real embeddings are), normalised.
"""

from __future__ import annotations

import os
import subprocess
import sys

import faiss
import numpy as np
import pytest

from xmodal.errors import InvalidInputError, MissingExtraError
from xmodal.index import (
    KINDS,
    IndexFileError,
    VectorIndex,
    build,
    choose_kind,
    create_index,
    estimate_bytes,
    load_index,
    parse_index_spec,
)
from xmodal.index.factory import FLAT_MAX_SCAN_BYTES
from xmodal.index.flat import FlatIndex

DIM = 64
N = 3000
# pq_bits=6 lets PQ train on 3000 vectors without FAISS's "too few points" warning.
# milvus: its exact FLAT index type, on a milvus-lite file (the milvus_lite fixture).
PARAMS = {"flat": {}, "hnsw": {}, "ivf": {}, "ivf-pq": {"pq_bits": 6}, "milvus": {}}
# PQ keeps dim/4 bytes per vector (16x smaller than float32) and pays for it in recall.
MIN_RECALL = {"flat": 1.0, "hnsw": 0.9, "ivf": 0.9, "ivf-pq": 0.5, "milvus": 1.0}
# How far a kind's scores may stray from the exact inner product (compressed codes).
SCORE_TOL = {"flat": 1e-5, "hnsw": 1e-5, "ivf": 0.02, "ivf-pq": 0.25, "milvus": 1e-5}

kinds = pytest.mark.parametrize("kind", list(KINDS))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # The test machine's cores are shared: OpenMP spinning on busy cores is slower than one.
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope="module", autouse=True)
def milvus_lite(tmp_path_factory):
    """Milvus indexes made here live in one milvus-lite file (each in its own collection)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XMODAL_MILVUS_URI", str(tmp_path_factory.mktemp("milvus") / "vectors.db"))
        yield


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def structured(n: int, rng: np.random.Generator, clusters: int = 40, latent: int = 16):
    """Gaussian clusters in a 16-d subspace of DIM plus a little noise, normalised."""
    basis = np.linalg.qr(np.random.default_rng(42).standard_normal((DIM, latent)))[0].T
    centres = np.random.default_rng(43).standard_normal((clusters, latent))
    z = centres[rng.integers(0, clusters, n)] + 0.6 * rng.standard_normal((n, latent))
    return unit(z @ basis + 0.05 * rng.standard_normal((n, DIM)))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    vectors = structured(N, rng)
    queries = structured(40, rng)
    ids = np.arange(N, dtype=np.int64) * 7 + 3  # sparse, like catalog row ids after deletes
    return ids, vectors, queries


def make(kind: str, ids=None, vectors=None) -> VectorIndex:
    index = create_index(DIM, kind, expected_size=N, **PARAMS[kind])
    if ids is not None:
        index.add(ids, vectors)
    return index


@pytest.fixture(scope="module")
def built_local(data):
    ids, vectors, _ = data
    return {kind: make(kind, ids, vectors) for kind in KINDS if not KINDS[kind].remote}


class _Built(dict):
    def __init__(self, local, data):
        super().__init__(local)
        self._data = data

    def __missing__(self, kind):
        self[kind] = make(kind, *self._data[:2])
        return self[kind]


@pytest.fixture
def built(built_local, data):
    """One filled index per kind, for the tests that only read. A remote one is filled afresh
    for each test: an index loaded from its saved pointer is a second handle on the same
    vectors, so a test that changes the loaded one changes it too."""
    return _Built(built_local, data)


def exact_top(queries, ids, vectors, k):
    order = np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :k]
    return ids[order]


def recall(hits, expected) -> float:
    return float(np.mean([len(set(h.ids) & set(e)) / len(e) for h, e in zip(hits, expected)]))


def true_scores(hit_ids, query, ids, vectors):
    return vectors[np.searchsorted(ids, hit_ids)] @ query


def check_hits(hits, query, ids, vectors, kind):
    """Real ids, each once, best first, with scores close to the true inner products."""
    assert hits.ids.dtype == np.int64 and hits.scores.dtype == np.float32
    assert (hits.ids >= 0).all() and np.unique(hits.ids).size == hits.ids.size
    assert np.all(np.diff(hits.scores) <= 1e-6)
    np.testing.assert_allclose(
        hits.scores, true_scores(hits.ids, query, ids, vectors), atol=SCORE_TOL[kind]
    )


# -- the contract ---------------------------------------------------------------------------


@kinds
def test_search_finds_nearest_neighbours(kind, built, data):
    ids, vectors, queries = data
    index = built[kind]
    assert index.kind == kind and index.dim == DIM and index.count() == len(index) == N
    hits = index.search(queries, 10)
    assert len(hits) == len(queries) and all(len(h) == 10 for h in hits)
    expected = exact_top(queries, ids, vectors, 10)
    assert recall(hits, expected) >= MIN_RECALL[kind]
    for h, q in zip(hits, queries):
        check_hits(h, q, ids, vectors, kind)
    if kind == "flat":
        np.testing.assert_array_equal(np.stack([h.ids for h in hits]), expected)
    # One query as a 1-D vector is a batch of one.
    (single,) = index.search(queries[0], 10)
    np.testing.assert_array_equal(single.ids, hits[0].ids)


@kinds
def test_k_larger_than_count_returns_everything_once(kind, built, data):
    ids, vectors, queries = data
    for h, q in zip(built[kind].search(queries[:2], 10 * N), queries):
        assert np.array_equal(np.sort(h.ids), ids)
        check_hits(h, q, ids, vectors, kind)


@kinds
def test_remove_drops_ids_from_results_and_count(kind, data):
    ids, vectors, queries = data
    index = make(kind, ids, vectors)
    top = np.unique(exact_top(queries, ids, vectors, 3))
    # 10% first (HNSW keeps tombstones), then 30% more (HNSW rebuilds its graph).
    removed = np.empty(0, np.int64)
    for gone in [top, ids[: int(0.4 * N)]]:
        assert index.remove(np.append(gone, 10**12)) == np.setdiff1d(gone, removed).size
        removed = np.union1d(removed, gone)
        keep = np.setdiff1d(ids, removed)
        assert index.count() == keep.size
        np.testing.assert_array_equal(index.ids(), keep)
        hits = index.search(queries, 10)
        assert not np.isin(np.concatenate([h.ids for h in hits]), removed).any()
        mask = np.isin(ids, keep)
        assert recall(hits, exact_top(queries, ids[mask], vectors[mask], 10)) >= MIN_RECALL[kind]
        everything = index.search(queries[0], 10 * N)[0]
        np.testing.assert_array_equal(np.sort(everything.ids), keep)
        for h in index.range_search(vectors[np.isin(ids, removed)][:20], 0.5):
            assert not np.isin(h.ids, removed).any()
    assert index.remove(top) == 0


@kinds
def test_adding_an_existing_id_replaces_its_vector(kind, data):
    ids, vectors, _ = data
    index = make(kind, ids, vectors)
    a, far = 0, int(np.argmin(vectors @ vectors[0]))  # give id a the vector of a distant item
    new = unit(vectors[far] + 0.01 * np.random.default_rng(1).standard_normal(DIM))
    index.add([ids[a]], new[None])
    assert index.count() == N
    near_new = index.search(new, 5)[0]
    assert ids[a] in near_new.ids
    assert ids[a] not in index.search(vectors[a], 5)[0].ids
    everything = index.search(new, 10 * N)[0]
    assert np.count_nonzero(everything.ids == ids[a]) == 1 and len(everything) == N


@kinds
def test_save_load_round_trip_gives_identical_results(kind, built, data, tmp_path):
    ids, vectors, queries = data
    index = built[kind]
    path = tmp_path / f"{kind}.xmi"
    path.write_bytes(b"an older index")
    index.save(path)
    assert os.listdir(tmp_path) == [path.name]  # replaced in place, no temporary left behind
    for loaded in [load_index(path), load_index(path, type(index))]:
        assert type(loaded) is type(index) and loaded.kind == kind
        assert loaded.params == index.params and loaded.dim == DIM
        np.testing.assert_array_equal(loaded.ids(), index.ids())
        allowed = ids[::3]
        for filter in [None, allowed]:
            for got, want in zip(
                loaded.search(queries, 10, filter), index.search(queries, 10, filter)
            ):
                np.testing.assert_array_equal(got.ids, want.ids)
                np.testing.assert_array_equal(got.scores, want.scores)
    loaded.remove(ids[:10])
    loaded.add(ids[:5], vectors[:5])
    assert loaded.count() == N - 5


def test_a_save_that_fails_midway_keeps_the_old_file(data, tmp_path):
    ids, vectors, _ = data

    class FailsMidway(FlatIndex):
        def _state(self):
            # The last member cannot be serialised: the write dies after most bytes are out.
            return {}, {"index": self._index, "broken": "not an index"}

    path = tmp_path / "index.xmi"
    make("flat", ids[:50], vectors[:50]).save(path)
    before = path.read_bytes()
    failing = FailsMidway(DIM)
    failing.add(ids, vectors)
    with pytest.raises(TypeError):
        failing.save(path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == [path.name]
    assert load_index(path).count() == 50
    with pytest.raises(IndexFileError, match="cannot write"):
        failing.save(tmp_path / "no-such-dir" / "index.xmi")


@kinds
def test_truncated_or_corrupt_file_raises_a_typed_error(kind, built, tmp_path):
    path = tmp_path / "index.xmi"
    built[kind].save(path)
    good = path.read_bytes()
    middle = bytearray(good)
    middle[len(good) // 2 : len(good) // 2 + 64] = bytes(64)
    for broken in [good[: len(good) // 2], good[:100], bytes(middle), b"", b"not an index"]:
        path.write_bytes(broken)
        with pytest.raises(IndexFileError):
            load_index(path)
    with pytest.raises(IndexFileError, match="no such file"):
        load_index(tmp_path / "missing.xmi")
    path.write_bytes(good)
    other = next(
        cls for cls in [k.load_class() for k in KINDS.values()] if cls is not type(built[kind])
    )
    with pytest.raises(IndexFileError, match="holds"):
        load_index(path, other)


@kinds
def test_filter_restricts_results(kind, built, data):
    ids, vectors, queries = data
    index = built[kind]
    rng = np.random.default_rng(2)
    # 20 ids: scanned exhaustively; half the ids: the backend's own filtered search.
    for allowed in [rng.choice(ids, 20, replace=False), rng.choice(ids, N // 2, replace=False)]:
        hits = index.search(queries, 10, filter=set(allowed.tolist()) | {10**12})
        mask = np.isin(ids, allowed)
        expected = exact_top(queries, ids[mask], vectors[mask], 10)
        assert all(len(h) == 10 and np.isin(h.ids, allowed).all() for h in hits)
        assert recall(hits, expected) >= MIN_RECALL[kind]
    few = index.search(queries[:3], 10, filter=ids[:4])
    assert all(np.array_equal(np.sort(h.ids), ids[:4]) for h in few)
    assert all(len(h) == 0 for h in index.search(queries[:3], 10, filter=[]))
    assert all(len(h) == 0 for h in index.search(queries[:3], 10, filter=[10**12]))


@kinds
def test_range_search_finds_duplicates_above_the_threshold_only(kind, data):
    ids, vectors, queries = data
    rng = np.random.default_rng(3)
    index = make(kind, ids, vectors)
    originals = rng.choice(N, 10, replace=False)
    near = unit(vectors[originals] + 0.02 * rng.standard_normal((10, DIM)))
    dup_ids = np.arange(10) + 10**9
    index.add(dup_ids, near)
    all_ids = np.concatenate([ids, dup_ids])
    all_vectors = np.concatenate([vectors, near])
    threshold = 0.97 - SCORE_TOL[kind]  # compressed codes blur even an exact duplicate's score
    for h, o, dup in zip(index.range_search(vectors[originals], threshold), originals, dup_ids):
        assert ids[o] in h.ids and dup in h.ids  # the exact and the near duplicate
        assert (h.scores > threshold).all() and np.all(np.diff(h.scores) <= 1e-6)
        order = np.argsort(all_ids)
        true = true_scores(h.ids, vectors[o], all_ids[order], all_vectors[order])
        assert (true > threshold - SCORE_TOL[kind]).all()
        if kind == "flat":
            above = all_ids[all_vectors @ vectors[o] > threshold]
            np.testing.assert_array_equal(np.sort(h.ids), np.sort(above))
    assert all(len(h) == 0 for h in index.range_search(queries, 1.01))


@kinds
def test_bad_input_is_rejected_and_changes_nothing(kind, data):
    ids, vectors, queries = data
    index = make(kind, ids[:100], vectors[:100])
    nan = vectors[:2].copy()
    nan[1, 3] = np.nan
    inf = vectors[:2].copy()
    inf[0, 0] = np.inf
    bad_adds = [
        (ids[100:102], vectors[:2, :32]),  # wrong dimension
        (ids[100:102], nan),
        (ids[100:102], inf),
        (ids[100:102], 2 * vectors[:2]),  # not normalised
        (ids[100:102], np.zeros((2, DIM), np.float32)),
        (ids[100:103], vectors[:2]),  # count mismatch
        ([7, 7], vectors[:2]),  # duplicate ids
        ([-1, 5], vectors[:2]),  # -1 is FAISS's "no hit"
        ([1.5, 2.5], vectors[:2]),
        (ids[100:102], vectors[:2].astype(int)),
    ]
    for bad_ids, bad_vectors in bad_adds:
        with pytest.raises(InvalidInputError):
            index.add(bad_ids, bad_vectors)
    assert index.count() == 100
    for bad in [
        lambda: index.search(queries[:, :10], 5),
        lambda: index.search(nan, 5),
        lambda: index.search(3 * queries, 5),
        lambda: index.search(queries, 0),
        lambda: index.search(queries, 2.5),
        lambda: index.search(queries, 5, filter=[0.5]),
        lambda: index.range_search(inf, 0.5),
        lambda: index.range_search(queries, float("nan")),
        lambda: index.remove([-3]),
    ]:
        with pytest.raises(InvalidInputError):
            bad()
    # float64 and float16 rows that are unit length to their precision are accepted.
    index.add(ids[100:102], vectors[100:102].astype(np.float16))
    assert len(index.search(queries.astype(np.float64), 5)[0]) == 5


@kinds
def test_empty_index(kind, data, tmp_path):
    _, _, queries = data
    index = make(kind)
    assert index.count() == 0 and index.ids().size == 0
    for hits in [index.search(queries[:3], 10), index.range_search(queries[:3], 0.0)]:
        assert len(hits) == 3 and all(len(h) == 0 for h in hits)
    assert index.search(np.empty((0, DIM), np.float32), 10) == []
    index.add([], np.empty((0, DIM), np.float32))
    assert index.remove([1, 2]) == 0
    index.save(tmp_path / "empty.xmi")
    loaded = load_index(tmp_path / "empty.xmi")
    assert loaded.count() == 0 and loaded.params == index.params


# -- backend specifics ----------------------------------------------------------------------


def test_ivf_searches_exactly_until_trained_then_trains_once(data, tmp_path):
    ids, vectors, queries = data
    index = create_index(DIM, "ivf", nlist=16, nprobe=4)
    assert index.train_size == 39 * 16
    index.add(ids[:300], vectors[:300])
    assert not index.trained
    hits = index.search(queries, 10)
    np.testing.assert_array_equal(
        np.stack([h.ids for h in hits]), exact_top(queries, ids[:300], vectors[:300], 10)
    )
    index.save(tmp_path / "pending.xmi")
    index = load_index(tmp_path / "pending.xmi")
    assert not index.trained and index.count() == 300
    index.add(ids[250:700], vectors[250:700])  # overlaps the buffer, crosses train_size
    assert index.trained and index.count() == 700
    assert (
        recall(index.search(queries, 10), exact_top(queries, ids[:700], vectors[:700], 10)) >= 0.9
    )


def test_tunables_are_settable_and_saved(data, tmp_path):
    ids, vectors, queries = data
    hnsw = make("hnsw", ids, vectors)
    hnsw.ef_search = 16
    ivf = make("ivf", ids, vectors)
    ivf.nprobe = 1
    # One probed list misses neighbours: the knob really reaches FAISS.
    assert recall(ivf.search(queries, 10), exact_top(queries, ids, vectors, 10)) < 0.9
    for index, name, value in [(hnsw, "ef_search", 16), (ivf, "nprobe", 1)]:
        index.save(tmp_path / "t.xmi")
        assert getattr(load_index(tmp_path / "t.xmi"), name) == value
        with pytest.raises(InvalidInputError):
            setattr(index, name, 0)


def test_faiss_is_imported_lazily_and_missing_faiss_names_the_package():
    code = (
        "import sys; import xmodal.index as x; assert 'faiss' not in sys.modules; "
        "sys.modules['faiss'] = None; x.create_index(8, 'flat')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 1 and MissingExtraError.__name__ in result.stderr
    assert "pip install faiss-cpu" in result.stderr


# -- the factory ----------------------------------------------------------------------------


def test_choose_kind_exact_when_small_graph_when_large_compressed_when_tight():
    dim = 512
    small = FLAT_MAX_SCAN_BYTES // (4 * dim)
    assert choose_kind(1000, dim) == "flat"
    assert choose_kind(small, dim) == "flat"
    assert choose_kind(small + 1, dim) == "hnsw"
    n = 1_000_000
    hnsw, ivf, pq = (estimate_bytes(k, n, dim) for k in ["hnsw", "ivf", "ivf-pq"])
    assert pq < ivf < estimate_bytes("flat", n, dim) < hnsw
    assert choose_kind(n, dim, max_memory_bytes=hnsw) == "hnsw"
    assert choose_kind(n, dim, max_memory_bytes=hnsw - 1) == "ivf"
    assert choose_kind(n, dim, max_memory_bytes=ivf - 1) == "ivf-pq"
    assert choose_kind(1000, dim, max_memory_bytes=estimate_bytes("ivf", 1000, dim)) == "ivf"
    with pytest.raises(InvalidInputError, match="compressed"):
        choose_kind(n, dim, max_memory_bytes=pq - 1)


def test_estimates_are_close_to_what_faiss_stores(built):
    for kind, index in built.items():
        (stored,) = [
            len(faiss.serialize_index(m))
            for m in index._state()[1].values()
            if not isinstance(m, np.ndarray)
        ]
        assert 1.0 <= estimate_bytes(kind, N, DIM, **index.params) / stored <= 1.5, kind


def test_create_index_by_name_and_auto(data):
    ids, vectors, _ = data
    assert create_index(DIM).kind == "flat"
    assert create_index(DIM, expected_size=10**7).kind == "hnsw"
    assert create_index(DIM, "ivf-pq").params["encoding"] == "pq"
    for bad in [
        lambda: create_index(DIM, "annoy"),
        lambda: create_index(DIM, "flat", ef_search=10),
        lambda: create_index(0, "flat"),
        lambda: create_index(DIM, "ivf-pq", pq_m=7),
        lambda: create_index(DIM, "ivf", encoding="lsh"),
        lambda: create_index(DIM, "hnsw", m=1),
    ]:
        with pytest.raises(InvalidInputError):
            bad()
    index = build("ivf", DIM, ids, vectors, nprobe=4)
    assert index.trained and index.count() == N and index.nprobe == 4


def test_index_specs_name_a_kind_and_its_parameters():
    assert parse_index_spec("auto") == ("auto", {})
    assert parse_index_spec("hnsw") == ("hnsw", {})
    assert parse_index_spec(" ivf:nlist=4096, nprobe=24") == ("ivf", {"nlist": 4096, "nprobe": 24})
    assert parse_index_spec("ivf-pq:encoding=pq,pq_bits=6") == (
        "ivf-pq",
        {"encoding": "pq", "pq_bits": 6},
    )
    assert parse_index_spec("hnsw:rebuild_fraction=0.5") == ("hnsw", {"rebuild_fraction": 0.5})
    for bad, reason in [
        ("annoy", "unknown index kind"),
        ("auto:nlist=4", "takes no parameters"),
        ("ivf:nlist", "not NAME=VALUE"),
        ("ivf:=4", "not NAME=VALUE"),
        ("hnsw:nlist=4", "takes no parameter nlist"),
    ]:
        with pytest.raises(InvalidInputError, match=reason):
            parse_index_spec(bad)


def test_the_index_package_has_no_import_cycle():
    """Imports between xmodal.index modules, in functions too, form no cycle."""
    import ast
    from pathlib import Path

    import xmodal.index

    folder = Path(xmodal.index.__file__).parent
    graph = {}
    for path in folder.glob("*.py"):
        if path.stem == "__init__":
            continue
        tree = ast.parse(path.read_text())
        graph[path.stem] = {
            node.module.rsplit(".", 1)[-1]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("xmodal.index.")
        }
    assert graph["fileformat"].isdisjoint({"base", "factory"})
    assert "factory" not in graph["base"]

    def reaches(start: str, target: str, seen: frozenset = frozenset()) -> bool:
        return any(
            n == target or (n not in seen and reaches(n, target, seen | {n}))
            for n in graph.get(start, ())
        )

    assert not [m for m in graph if reaches(m, m)]
