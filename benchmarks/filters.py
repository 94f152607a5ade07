"""What a `where` filter costs: the catalog's allowed-id lookup and the filtered ANN search.

    python benchmarks/filters.py                 # 50k items, d=64
    python benchmarks/filters.py --items 200000

Part 1, the catalog (a real SQLite catalog of synthetic rows): each built-in filter answered
from its index (migration 3; path's UNIQUE index for a prefix) against the same query forced
to scan the table (`NOT INDEXED`; a LIKE for the prefix), and a metadata filter the first time
(a scan of every row's JSON) against a repeat (the per-filter cache). Part 2, HNSW with filters
of several selectivities: how many of the queries get k results, recall@k against exact search
over the allowed ids, and latency. Ratios are against the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from xmodal.catalog import Catalog, FileRow
from xmodal.filters import parse_filter
from xmodal.index import build

K = 10


def timed(fn, repeat: int = 5) -> tuple[float, object]:
    """Median seconds of fn() over `repeat` runs, and its last result."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def fill(catalog: Catalog, n: int, dim: int, rng) -> np.ndarray:
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    base_ns = 1_700_000_000 * 10**9
    with catalog.transaction():
        for i in range(n):
            row = FileRow(
                path=f"/photos/{2015 + i % 10}/{i:07d}.jpg".encode(),
                size=int(rng.integers(10_000, 10_000_000)),
                mtime_ns=base_ns + int(rng.integers(0, 3 * 365 * 86400)) * 10**9,
                hash=i.to_bytes(16, "little"),
                width=int(rng.choice([640, 1024, 2048, 4032])),
                height=int(rng.choice([480, 768, 1536, 3024])),
            )
            item_id = catalog.insert_file(row, vectors[i])
            if i % 20 == 0:
                catalog.set_metadata(item_id, {"album": f"a{i % 100}"})
    return vectors


def catalog_part(path: Path, catalog: Catalog) -> None:
    db = sqlite3.connect(path)
    print(f"\n{'filter':<42} {'indexed ms':>11} {'scan ms':>9} {'speed-up':>9} {'ids':>8}")
    for where, scan_sql, scan_args in [
        ({"size": {">": 9_900_000}}, "size > ?", [9_900_000]),
        (
            {"width": {">=": 4032}, "height": {">=": 3024}},
            "width >= ? AND height >= ?",
            [4032, 3024],
        ),
        ({"mtime": {"<": "2023-11-20"}}, None, None),
        ({"path": {"prefix": "/photos/2019/"}}, "path LIKE ?", ["/photos/2019/%"]),
    ]:
        clause, args = parse_filter(where).sql()
        if scan_sql is None:
            scan_sql, scan_args = clause, args
        fast, ids = timed(
            lambda c=clause, a=args: db.execute(f"SELECT id FROM files WHERE {c}", a).fetchall()
        )
        slow, _ = timed(
            lambda s=scan_sql, a=scan_args: db.execute(
                f"SELECT id FROM files NOT INDEXED WHERE {s}", a
            ).fetchall()
        )
        print(
            f"{where!s:<42} {fast * 1e3:>11.2f} {slow * 1e3:>9.2f} {slow / fast:>8.1f}x"
            f" {len(ids):>8}"
        )
    where = {"album": "a40"}
    start = time.perf_counter()
    first = catalog.ids_where(where)
    cold = time.perf_counter() - start
    warm, _ = timed(lambda: catalog.ids_where(where), repeat=20)
    print(
        f"{str(where) + ' (metadata, cached)':<42} {warm * 1e3:>11.4f} {cold * 1e3:>9.2f} "
        f"{cold / warm:>8.0f}x {first.size:>8}"
    )


def ann_part(vectors: np.ndarray, ids: np.ndarray, rng) -> None:
    index = build("hnsw", vectors.shape[1], ids, vectors)
    queries = vectors[rng.choice(len(vectors), 200, replace=False)]
    print(f"\nHNSW, {len(ids)} vectors, {len(queries)} queries, k={K}")
    print(
        f"{'filter keeps':>12} {'k returned':>11} {'recall@k':>9} {'p50 ms':>8}"
        f" {'exact p50 ms':>13}"
    )
    for fraction in (0.001, 0.01, 0.05, 0.2, 0.5):
        allowed = np.sort(rng.choice(ids, max(K, int(fraction * len(ids))), replace=False))
        full, recall, lat, exact_lat = 0, [], [], []
        allowed_vectors = vectors[np.searchsorted(ids, allowed)]
        for query in queries:
            start = time.perf_counter()
            (hits,) = index.search(query[None], K, filter=allowed)
            lat.append(time.perf_counter() - start)
            start = time.perf_counter()
            truth = allowed[np.argsort(-(allowed_vectors @ query))[:K]]
            exact_lat.append(time.perf_counter() - start)
            full += len(hits) == K
            recall.append(np.isin(truth, hits.ids).mean())
        print(
            f"{fraction:>12.1%} {full / len(queries):>11.0%} {np.mean(recall):>9.3f} "
            f"{statistics.median(lat) * 1e3:>8.3f} {statistics.median(exact_lat) * 1e3:>13.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=64)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.items} items"
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "catalog.sqlite"
        catalog = Catalog(path)
        vectors = fill(catalog, args.items, args.dim, rng)
        catalog_part(path, catalog)
        ann_part(vectors, catalog.ids(), rng)
        catalog.close()


if __name__ == "__main__":
    main()
