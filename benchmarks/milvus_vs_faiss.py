"""Insert rate and search latency, FAISS flat against milvus-lite (FLAT and HNSW), same vectors.

    python benchmarks/milvus_vs_faiss.py                 # 5,000 lite-en word vectors, 200 queries
    python benchmarks/milvus_vs_faiss.py --words 20000   # more words (embedding takes ~30 s/5k)
    python benchmarks/milvus_vs_faiss.py --uri http://HOST:19530   # a Milvus server instead

Vectors: lite-en (384-d) embeddings of words from /usr/share/dict/words (every 7th word; the
queries are other words), cached in benchmarks/out/cache. Insert: add() of every vector in
--batch rows at a time, then save() (for Milvus a flush), as `xmodal index` does. Search: one
query per search() call, as a user searches: p50/p99 over the queries, after 10 warm-up
calls; top-10 agreement with FAISS flat is the fraction of queries whose ids match exactly.
FAISS runs on one thread (milvus-lite answers in this process too). Ratios: FAISS / Milvus for
the insert rate, Milvus / FAISS for latency, so above 1 means FAISS is faster.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from xmodal.index import create_index

K = 10
WORDS = Path("/usr/share/dict/words")


def word_vectors(n: int, queries: int) -> tuple[np.ndarray, np.ndarray]:
    from _common import cached
    from xmodal.models import load_model

    words = sorted({w for w in WORDS.read_text().split() if w.isalpha() and w.islower()})
    base, held = words[::7][:n], words[3::7][:queries]
    model = load_model("lite-en")
    vectors = cached("milvus-words", f"{n}", lambda: model.embed_texts(base))
    return vectors.astype(np.float32), cached(
        "milvus-queries", f"{queries}", lambda: model.embed_texts(held)
    ).astype(np.float32)


def insert(index, ids, vectors, batch: int, path: Path) -> float:
    start = time.perf_counter()
    for s in range(0, len(ids), batch):
        index.add(ids[s : s + batch], vectors[s : s + batch])
    index.save(path)
    return len(ids) / (time.perf_counter() - start)


def latencies(index, queries) -> tuple[float, float, list]:
    for q in queries[:10]:
        index.search(q, K)
    times, hits = [], []
    for q in queries:
        start = time.perf_counter()
        hits.append(index.search(q, K)[0])
        times.append(time.perf_counter() - start)
    p50, p99 = np.percentile(np.array(times) * 1e3, [50, 99])
    return float(p50), float(p99), hits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--words", type=int, default=5000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--batch", type=int, default=1000, help="rows per add() call")
    parser.add_argument("--uri", default=None, help="Milvus URI (default: a temporary .db)")
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)
    vectors, queries = word_vectors(args.words, args.queries)
    ids = np.arange(len(vectors), dtype=np.int64)
    print(
        f"{len(vectors)} vectors of {vectors.shape[1]} dims, {len(queries)} queries; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    )
    with tempfile.TemporaryDirectory() as tmp:
        uri = args.uri or str(Path(tmp) / "vectors.db")
        rows = []
        for label, kind, params in [
            ("faiss flat", "flat", {}),
            ("milvus FLAT", "milvus", {"uri": uri, "index": "flat"}),
            ("milvus HNSW", "milvus", {"uri": uri, "index": "hnsw"}),
        ]:
            index = create_index(vectors.shape[1], kind, **params)
            rate = insert(index, ids, vectors, args.batch, Path(tmp) / f"{label}.xmi")
            p50, p99, hits = latencies(index, queries)
            rows.append((label, rate, p50, p99, hits))
            if kind == "milvus":
                index.drop()
                index.close()
    base = rows[0]
    print(
        f"{'index':<18} {'insert/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'insert x':>9} {'p50 x':>7} {'p99 x':>7} {'same top10':>10}"
    )
    for label, rate, p50, p99, hits in rows:
        same = np.mean([np.array_equal(a.ids, b.ids) for a, b in zip(hits, base[4])])
        print(
            f"{label:<18} {rate:>10,.0f} {p50:>8.2f} {p99:>8.2f} {base[1] / rate:>9.1f} "
            f"{p50 / base[2]:>7.1f} {p99 / base[3]:>7.1f} {same:>10.1%}"
        )


if __name__ == "__main__":
    main()
