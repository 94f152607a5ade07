"""Build time, memory, latency and recall@10 of every index kind, against exact (flat) search.

    python benchmarks/index_search.py                       # 100k and 1M structured vectors, d=512
    python benchmarks/index_search.py --sizes 20000         # a quick smoke run
    python benchmarks/index_search.py --vectors emb.npy     # real embeddings (last rows = queries)
    python benchmarks/index_search.py --gaussian            # i.i.d. Gaussian: the worst case
    python benchmarks/index_search.py --kinds flat hnsw hnsw:m=16,ef_construction=40 ivf:nlist=4096

A kind is a factory name, optionally with constructor parameters after ':' overriding the
defaults (several variants of one kind may share a table). Real embeddings of a word list:
benchmarks/word_vectors.py.

Each approximate kind is tuned first: the smallest ef_search / nprobe whose recall@10 reaches
--target-recall (or after which recall stops rising) is the setting timed. Latency p50/p99 is
one query per search() call, as a user searches: FAISS parallelises over the queries of a call,
so these run on one thread whatever --threads says; qps is one batched call of every query on
--threads threads. Memory: "file MB" is the saved index, "rss MB" the process's resident growth
over the build (both include ids); "mem" is the file size against flat's. Ratios are against
the flat index built in the same run.
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

from xmodal.index import build, parse_index_spec

K = 10
SWEEPS = {
    "hnsw": ("ef_search", [16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512]),
    "ivf": ("nprobe", [1, 2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256]),
    "ivf-pq": ("nprobe", [1, 2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256]),
}


def machine() -> str:
    model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def structured(n: int, dim: int, rng: np.random.Generator, chunk: int = 100_000) -> np.ndarray:
    """Clusters in a dim/8-dimensional subspace plus noise: embeddings have low intrinsic rank."""
    latent = max(8, dim // 8)
    basis = np.linalg.qr(np.random.default_rng(1).standard_normal((dim, latent)))[0].T
    centres = np.random.default_rng(2).standard_normal((1000, latent))
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        z = centres[rng.integers(0, len(centres), m)] + 0.6 * rng.standard_normal((m, latent))
        out[start : start + m] = unit(z @ basis + 0.05 * rng.standard_normal((m, dim)))
    return out


def dataset(args, n: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(base vectors [n, d], queries [q, d]), or None when a --vectors file is too small."""
    if args.vectors:
        data = np.load(args.vectors, mmap_mode="r")
        if len(data) < n + args.queries:
            return None
        return unit(np.asarray(data[:n])), unit(np.asarray(data[-args.queries :]))
    rng = np.random.default_rng(0)
    if args.gaussian:
        return unit(rng.standard_normal((n, args.dim))), unit(
            rng.standard_normal((args.queries, args.dim))
        )
    both = structured(n + args.queries, args.dim, rng)
    return both[:n], both[n:]


def recall(found: list, truth: np.ndarray) -> float:
    return float(np.mean([len(set(h.ids) & set(t)) / K for h, t in zip(found, truth)]))


def tune(index, kind: str, queries: np.ndarray, truth: np.ndarray, target: float) -> str:
    """Set the smallest knob value reaching the target recall, or where recall stops rising
    (compressed codes cap it)."""
    name, values = SWEEPS[kind]
    tried, last = [], -1.0
    for value in values:
        setattr(index, name, value)
        r = recall(index.search(queries, K), truth)
        tried.append(f"{value}:{r:.3f}")
        if r >= target or r - last < 0.002 or getattr(index, name) < value:  # nprobe <= nlist
            break
        last = r
    print(f"    {kind} sweep {name} -> " + " ".join(tried))
    return f"{name}={getattr(index, name)}"


def measure(index, queries: np.ndarray, singles: int) -> dict[str, float]:
    times = []
    for q in queries[:singles]:
        start = time.perf_counter()
        index.search(q, K)
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    found = index.search(queries, K)
    batch = time.perf_counter() - start
    return {
        "p50_ms": 1e3 * float(np.percentile(times, 50)),
        "p99_ms": 1e3 * float(np.percentile(times, 99)),
        "qps": len(queries) / batch,
        "found": found,
    }


def file_bytes(index) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "index.xmi"
        index.save(path)
        return path.stat().st_size


def run_size(args, n: int) -> None:
    data = dataset(args, n)
    if data is None:
        print(f"\nn={n:,}: skipped, {args.vectors} has fewer than n + {args.queries} rows")
        return
    vectors, queries = data
    ids = np.arange(n, dtype=np.int64)
    print(f"\nn={n:,}  dim={vectors.shape[1]}  queries={len(queries)}")
    rows, truth = [], None
    for spec in args.kinds:
        kind, params = parse_index_spec(spec)
        before = rss_bytes()
        start = time.perf_counter()
        index = build(kind, vectors.shape[1], ids, vectors, **params)
        build_s = time.perf_counter() - start
        print(f"  {spec}: built in {build_s:.1f} s", flush=True)
        rss = rss_bytes() - before
        setting = "exact"
        if kind == "flat":
            truth = np.stack([h.ids for h in index.search(queries, K)])
        elif truth is not None:
            setting = tune(index, kind, queries, truth, args.target_recall)
        m = measure(index, queries, args.singles)
        r = recall(m.pop("found"), truth) if truth is not None else float("nan")
        rows.append(dict(kind=spec, setting=setting, build_s=build_s, rss=rss, recall=r, **m))
        rows[-1]["file"] = file_bytes(index)
        del index
    base = next((r for r in rows if r["kind"] == "flat"), None)
    width = max(8, *(len(r["kind"]) for r in rows))
    head = (
        f"{'kind':{width}} {'setting':14} {'build s':>8} {'file MB':>8} {'rss MB':>7} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'qps':>8} {'recall':>6} | vs flat: {'build':>6} "
        f"{'mem':>5} {'p50':>6} {'qps':>6}"
    )
    print(head)
    for r in rows:
        line = (
            f"{r['kind']:{width}} {r['setting']:14} {r['build_s']:8.2f} {r['file'] / 2**20:8.1f} "
            f"{r['rss'] / 2**20:7.0f} {r['p50_ms']:7.2f} {r['p99_ms']:7.2f} {r['qps']:8.0f} "
            f"{r['recall']:6.3f}"
        )
        if base:
            line += (
                f" | {'':9}{r['build_s'] / base['build_s']:6.2f} {r['file'] / base['file']:5.2f} "
                f"{base['p50_ms'] / r['p50_ms']:5.1f}x {r['qps'] / base['qps']:5.1f}x"
            )
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=512, help="of generated vectors")
    parser.add_argument("--vectors", type=Path, help=".npy of real embeddings [n, d]")
    parser.add_argument("--gaussian", action="store_true", help="i.i.d. Gaussian: worst case")
    parser.add_argument(
        "--kinds", nargs="+", default=["flat", "hnsw", "ivf", "ivf-pq"], help="NAME[:k=v,...]"
    )
    parser.add_argument("--queries", type=int, default=1000, help="batched; held out of the base")
    parser.add_argument("--singles", type=int, default=200, help="timed one query at a time")
    parser.add_argument("--target-recall", type=float, default=0.95)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    if parse_index_spec(args.kinds[0]) != ("flat", {}):
        parser.error("flat must come first: it is the exact baseline")
    faiss.omp_set_num_threads(args.threads)
    source = args.vectors or ("i.i.d. Gaussian" if args.gaussian else "structured (clustered)")
    print(f"machine: {machine()}")
    print(f"faiss {faiss.__version__}, {args.threads} threads; vectors: {source}; k={K}")
    print("p50/p99: one query per call (one thread); qps: all queries in one call")
    for n in args.sizes:
        run_size(args, n)


if __name__ == "__main__":
    main()
