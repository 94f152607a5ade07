"""The `where` language end to end: parsing, SQL on a real catalog of the sample photos (range,
prefix and metadata filters, their indexes, the allowed-id cache), the CLI and a real server,
and filtered ANN search that returns k whenever k items match."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from datetime import UTC, datetime

import httpx
import numpy as np
import pytest
from click.testing import CliRunner

from live_server import live_server
from xmodal.catalog import Catalog
from xmodal.cli import main
from xmodal.engine.collection import Collection
from xmodal.errors import InvalidInputError
from xmodal.filters import parse_filter, parse_terms
from xmodal.index import build
from xmodal.models.fake import FakeEncoder

DAY = 86400


def epoch(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@pytest.fixture
def library(tmp_path, photos):
    """The 14 photos in two dated folders, one sibling whose name extends the other's, and a
    folder with LIKE's wildcards in its name; mtimes a day apart from 2024-01-01 UTC."""
    folders = [tmp_path / "lib" / n for n in ("2024", "2024-old", "a%b_c")]
    for folder in folders:
        folder.mkdir(parents=True)
    for i, p in enumerate(photos):
        target = folders[i % 3] / p.path.name
        shutil.copy(p.path, target)
        moment = epoch("2024-01-01T00:00:00") + i * DAY + 3600
        os.utime(target, (moment, moment))
    return tmp_path / "lib"


@pytest.fixture
def db(tmp_path, library):
    with Collection.open(tmp_path / "db", FakeEncoder(dim=32)) as c:
        c.index([library])
    return tmp_path / "db"


@pytest.fixture
def coll(db):
    with Collection.open(db, FakeEncoder(dim=32)) as c:
        yield c


def all_items(c: Collection):
    return [c.get(h.id) for h in c.search_text("x", k=100)]


def found(c: Collection, where) -> set[int]:
    return {h.id for h in c.search_text("x", k=100, where=where)}


# -- parsing ---------------------------------------------------------------------------------


def test_cli_terms_become_the_json_form(tmp_path):
    terms = ["album=trip", "size>100000", "width >= 1024", "mtime>=2024-01-01", "fav=true"]
    assert parse_terms([*terms, "path^=/photos/2024/", "n<=3.5"]) == {
        "album": {"=": "trip"},
        "size": {">": 100000},
        "width": {">=": 1024},
        "mtime": {">=": "2024-01-01"},
        "fav": {"=": True},
        "path": {"prefix": "/photos/2024/"},
        "n": {"<=": 3.5},
    }
    # A relative prefix is taken from the folder given, its trailing slash kept.
    assert parse_terms(["path^=sub/x/"], cwd=str(tmp_path)) == {
        "path": {"prefix": f"{tmp_path}/sub/x/"}
    }
    assert parse_terms([]) is None


@pytest.mark.parametrize(
    "terms",
    [["album"], ["=x"], ["size>1", "size>2"], ["album^=x"], ["path^="]],
)
def test_bad_cli_terms_are_refused(terms):
    with pytest.raises(InvalidInputError):
        parse_filter(parse_terms(terms))


@pytest.mark.parametrize(
    "where",
    [
        {"size": "big"},
        {"size": {"~": 1}},
        {"size": {}},
        {"width": True},
        {"mtime": {">=": "yesterday"}},
        {"mtime": {">": float("nan")}},
        {"mtime": {">": 10**12}},
        {"mtime": {"<": "2400-01-01"}},
        {"size": {">": 2**63}},
        {"n": 2**70},
        {"path": {"prefix": ""}},
        {"path": {"prefix": [1]}},
        {"path": {">": "/a"}},
        {"album": {"prefix": "x"}},
        {"fav": {">": True}},
        {'a"b': 1},
        {"album": None},
        {"album": ["trip"]},
        {"": 1},
        [("size", 1)],
    ],
)
def test_bad_filters_are_refused_with_a_reason(where):
    with pytest.raises(InvalidInputError, match=r"\S"):
        parse_filter(where)


# -- on a real catalog ---------------------------------------------------------------------


def test_range_filters_on_builtin_fields(coll):
    items = all_items(coll)
    assert len(items) == 14
    sizes = sorted(i.size for i in items)
    cut = sizes[7]
    assert found(coll, {"size": {">": cut}}) == {i.id for i in items if i.size > cut}
    assert found(coll, {"size": {">=": cut, "<": sizes[-1]}}) == {
        i.id for i in items if cut <= i.size < sizes[-1]
    }
    wide = {i.id for i in items if i.width >= 512 and i.height < 512}
    assert wide and found(coll, {"width": {">=": 512}, "height": {"<": 512}}) == wide
    # mtime: dates are UTC midnights; a bare date with = is that whole day.
    assert found(coll, {"mtime": {">=": "2024-01-10"}}) == {
        i.id for i in items if i.mtime >= epoch("2024-01-10T00:00:00")
    }
    (third,) = [i.id for i in items if int(i.mtime) == int(epoch("2024-01-03T01:00:00"))]
    assert found(coll, {"mtime": "2024-01-03"}) == {third}
    assert found(coll, {"mtime": {"<": epoch("2024-01-02T00:00:00")}}) == {
        i.id for i in items if i.mtime < epoch("2024-01-02T00:00:00")
    }
    assert found(coll, {"mtime": {">=": "2024-01-03T02:00:00+01:00"}}) == {
        i.id for i in items if i.mtime >= epoch("2024-01-03T01:00:00")
    }


def test_path_prefix_is_a_byte_range_not_a_pattern(coll, library):
    items = all_items(coll)
    under = lambda folder: {i.id for i in items if i.path.startswith(f"{library}/{folder}/")}  # noqa: E731
    assert found(coll, {"path": {"prefix": f"{library}/2024/"}}) == under("2024")
    # Without the slash the sibling "2024-old" shares the prefix, as bytes do.
    assert found(coll, {"path": {"prefix": f"{library}/2024"}}) == under("2024") | under("2024-old")
    # LIKE's wildcards are plain characters: "a_b%c" is no pattern for "a%b_c".
    assert found(coll, {"path": {"prefix": f"{library}/a%b_c/"}}) == under("a%b_c")
    assert found(coll, {"path": {"prefix": f"{library}/a_b%c/"}}) == set()
    assert found(coll, {"path": {"prefix": [f"{library}/2024/", f"{library}/a%b_c/"]}}) == (
        under("2024") | under("a%b_c")
    )
    first = items[0]
    assert found(coll, {"path": first.path}) == {first.id}


def test_metadata_ranges_compare_like_with_like(coll):
    items = all_items(coll)
    for n, item in enumerate(items):
        year = 2018 + n if n % 2 else str(2018 + n)  # every other one a string
        coll.set_metadata(item.id, {"year": year, "size": n})
    numbers = {item.id for n, item in enumerate(items) if n % 2 and 2018 + n >= 2025}
    assert found(coll, {"year": {">=": 2025}}) == numbers
    assert found(coll, {"year": {">=": "2025"}}) == {
        item.id for n, item in enumerate(items) if not n % 2 and 2018 + n >= 2025
    }
    # "metadata.size" is the metadata key; "size" the file's bytes.
    assert found(coll, {"metadata.size": {"<": 3}}) == {i.id for i in items[:3]}
    assert found(coll, {"metadata.size": 4, "year": "2022"}) == {items[4].id}


def test_builtin_filters_use_indexes(coll):
    db = sqlite3.connect(coll.db_path / "catalog.sqlite")
    for where, index in [
        ({"size": {">": 1000}}, "files_by_size"),
        ({"width": {"<": 10}}, "files_by_width"),
        ({"height": {">=": 10}}, "files_by_height"),
        ({"mtime": {">=": "2024-01-01"}}, "files_by_mtime"),
        ({"path": {"prefix": "/photos/"}}, "sqlite_autoindex_files_1"),  # path's UNIQUE
    ]:
        clause, args = parse_filter(where).sql()
        plan = db.execute(f"EXPLAIN QUERY PLAN SELECT id FROM files WHERE {clause}", args)
        assert index in " ".join(str(row) for row in plan), where


def test_allowed_ids_are_cached_until_the_catalog_changes(coll, db):
    catalog = coll._catalog
    item = all_items(coll)[0]
    where = {"album": "trip"}
    first = catalog.ids_where(where)
    assert first.size == 0 and catalog.ids_where(where) is first  # no rescan
    coll.set_metadata(item.id, {"album": "trip"})  # this connection's own commit
    assert catalog.ids_where(where).tolist() == [item.id]
    other = Catalog(db / "catalog.sqlite")  # another writer's commit
    with other.transaction():
        other.set_metadata(item.id, {})
    other.close()
    assert catalog.ids_where(where).size == 0


def test_the_cache_holds_a_bounded_number_of_ids(coll, monkeypatch):
    import xmodal.catalog

    monkeypatch.setattr(xmodal.catalog, "_FILTER_CACHE_IDS", 5)
    catalog, small, large = coll._catalog, {"size": {"<": 0}}, {"size": {">": 0}}
    assert catalog.ids_where(small) is catalog.ids_where(small)
    first = catalog.ids_where(large)
    assert first.size == 14 and catalog.ids_where(large) is not first  # too big to keep
    assert catalog.ids_where(large).tolist() == first.tolist()


# -- filtered ANN search returns k -----------------------------------------------------------


def clustered(n: int, dim: int, clusters: int, seed: int = 0):
    """Unit vectors in tight, far-apart clusters: a filter on one cluster is invisible to a
    graph walk or a probe that starts near another."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    labels = np.arange(n) % clusters
    x = centres[labels] + 0.05 * rng.standard_normal((n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, labels


def exact_top(x, ids, query, allowed, k):
    keep = np.isin(ids, allowed)
    scores = x[keep] @ query
    order = np.argsort(-scores, kind="stable")[:k]
    return ids[keep][order]


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_a_one_percent_filter_returns_k(kind):
    n, dim, k = 10_000, 32, 10
    x, _ = clustered(n, dim, clusters=50)
    ids = np.arange(n, dtype=np.int64) * 3
    params = {"nlist": 64, "nprobe": 2} if kind == "ivf" else {}
    index = build(kind, dim, ids, x, **params)
    rng = np.random.default_rng(1)
    allowed = np.sort(rng.choice(ids, n // 100, replace=False))
    queries = x[rng.choice(n, 20, replace=False)]
    for query, hits in zip(queries, index.search(queries, k, filter=allowed)):
        assert len(hits) == k and np.isin(hits.ids, allowed).all()
        if kind != "ivf":  # SQ8 codes shift scores slightly; flat and HNSW's storage are exact
            assert hits.ids.tolist() == exact_top(x, ids, query, allowed, k).tolist()


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_a_wide_filter_the_walk_misses_still_returns_k(kind):
    """A filter of 20% (too wide for the exact path) lying in other clusters than the query:
    the approximate search alone comes back short; the exact rerun fills k."""
    n, dim, k = 45_000, 16, 50
    x, labels = clustered(n, dim, clusters=5)
    ids = np.arange(n, dtype=np.int64)
    params = {"nlist": 20, "nprobe": 1} if kind == "ivf" else {"ef_search": 16}
    index = build(kind, dim, ids, x, **params)
    allowed = ids[labels == 4]
    query = x[labels == 0][:1]
    _, raw = index._search(query, k, allowed)  # the approximate answer on its own
    assert (raw >= 0).sum() < k
    (hits,) = index.search(query, k, filter=allowed)
    assert len(hits) == k and np.isin(hits.ids, allowed).all()
    if kind == "hnsw":
        assert hits.ids.tolist() == exact_top(x, ids, query[0], allowed, k).tolist()


# -- CLI and server ----------------------------------------------------------------------------


def test_cli_where_ranges_prefixes_and_errors(db, library, monkeypatch):
    with Collection.open(db) as c:
        items = all_items(c)
    db = str(db)
    runner = CliRunner()

    def ids(*where):
        args = ["search", "x", "--db", db, "-k", "100", "--json"]
        result = runner.invoke(main, args + [a for w in where for a in ("--where", w)])
        assert result.exit_code == 0, result.output
        return {r["id"] for r in json.loads(result.stdout)["results"]}

    cut = sorted(i.size for i in items)[5]
    assert ids(f"size>{cut}", "mtime>=2024-01-05") == {
        i.id for i in items if i.size > cut and i.mtime >= epoch("2024-01-05T00:00:00")
    }
    assert ids(f"path^={library}/2024/") == {
        i.id for i in items if i.path.startswith(f"{library}/2024/")
    }
    monkeypatch.chdir(library)  # a relative prefix is taken from the current folder
    assert ids("path^=a%b_c/") == {i.id for i in items if "/a%b_c/" in i.path}
    for bad, message in [
        ("size>big", "compare with a number"),
        ("mtime>=soon", "2024-01-01"),
        ("album", "KEY=VALUE"),
    ]:
        result = runner.invoke(main, ["search", "x", "--db", db, "--where", bad])
        assert result.exit_code == 1 and message in result.output, result.output
        assert "Traceback" not in result.output


@pytest.fixture
def server(db):
    from xmodal.server import ServerSettings, create_app

    app = create_app(ServerSettings(db=db), encoder=FakeEncoder(dim=32))
    with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client


def test_server_where_ranges_relative_prefixes_and_422(server):
    def paths(where):
        r = server.get("/search", params={"q": "x", "k": 100, "where": json.dumps(where)})
        assert r.status_code == 200, r.text
        return {h["path"] for h in r.json()["results"]}

    everything = paths({})
    assert len(everything) == 14
    # Paths are shown relative to the indexed root, and so is a relative prefix.
    assert paths({"path": {"prefix": "a%b_c/"}}) == {
        p for p in everything if p.startswith("a%b_c/")
    }
    assert paths({"path": {"prefix": "2024"}}) == {p for p in everything if p.startswith("2024")}
    assert paths({"mtime": {"<": "2024-01-04"}, "size": {">": 0}}) == paths(
        {"mtime": {"<": "2024-01-04"}}
    )
    assert len(paths({"mtime": {"<": "2024-01-04"}})) == 3
    form = {"text": "x", "k": "100", "where": json.dumps({"width": {">=": 0}})}
    assert len(server.post("/search", data=form).json()["results"]) == 14
    for bad in [{"size": {"~": 1}}, {"mtime": {">": "soon"}}, {"path": {"prefix": ""}}]:
        r = server.get("/search", params={"q": "x", "where": json.dumps(bad)})
        assert r.status_code == 422 and "where" in r.json()["detail"], r.text
