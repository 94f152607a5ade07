"""Embedding quality without a downstream task: how close matched pairs are, how well each
modality spreads over the sphere, how clustered it is, and where a search cut-off belongs.

Alignment and uniformity follow Wang & Isola (2020), "Understanding Contrastive Representation
Learning through Alignment and Uniformity on the Hypersphere": lower is better for both.
"""

from __future__ import annotations

import math

import numpy as np

from xmodal.errors import MissingExtraError

# Pairwise statistics over n rows cost n^2: above this many rows a fixed random subset is used.
MAX_PAIRWISE_ROWS = 4096
# Unmatched (text, image) scores kept for the distribution: all of them, or a fixed sample.
MAX_UNMATCHED = 200_000
# k-means silhouette is computed on at most this many points (sklearn's sample_size).
SILHOUETTE_SAMPLE = 2000
_CHUNK = 1024


def alignment(a: np.ndarray, b: np.ndarray, alpha: float = 2.0) -> float:
    """Mean ||a_i - b_i||^alpha over matched rows: 0 when every pair is embedded identically."""
    return float(np.mean(np.linalg.norm(a - b, axis=1) ** alpha))


def _subset(x: np.ndarray, limit: int, seed: int = 0) -> np.ndarray:
    if len(x) <= limit:
        return x
    return x[np.sort(np.random.default_rng(seed).choice(len(x), limit, replace=False))]


def pairwise_stats(x: np.ndarray, t: float = 2.0) -> tuple[float, float] | None:
    """(uniformity, mean pairwise distance) over distinct rows i != j; None below two rows.

    uniformity = log mean exp(-t ||x_i - x_j||^2): about -4 for unit vectors spread evenly over
    a high-dimensional sphere (t=2), 0 when every row is the same point.
    """
    x = _subset(np.asarray(x, dtype=np.float64), MAX_PAIRWISE_ROWS)
    n = len(x)
    if n < 2:
        return None
    sq = (x * x).sum(axis=1)
    kernel_sum = distance_sum = 0.0
    for start in range(0, n, _CHUNK):
        rows = x[start : start + _CHUNK]
        d2 = np.maximum(sq[start : start + _CHUNK, None] + sq[None, :] - 2 * rows @ x.T, 0.0)
        off = np.ones_like(d2, dtype=bool)
        off[np.arange(len(rows)), start + np.arange(len(rows))] = False  # skip i == j
        kernel_sum += np.exp(-t * d2[off]).sum()
        distance_sum += np.sqrt(d2[off]).sum()
    pairs = n * (n - 1)
    return math.log(kernel_sum / pairs), float(distance_sum / pairs)


def default_cluster_count(n: int) -> int:
    """k for sets without labels: the rule of thumb sqrt(n / 2), kept within [2, 50]."""
    return int(min(max(round(math.sqrt(n / 2)), 2), 50))


def _sklearn(what: str):
    try:
        import sklearn.cluster
        import sklearn.metrics
    except ImportError as e:
        raise MissingExtraError(what, "train", "sklearn") from e
    return sklearn


def kmeans_silhouette(x: np.ndarray, k: int, seed: int = 0) -> float | None:
    """Silhouette of a k-means clustering of the rows (-1..1; higher = tighter, better separated
    clusters); None when k is not between 2 and n - 1 or there are fewer than k distinct rows."""
    if not 2 <= k < len(x):
        return None
    sk = _sklearn("the k-means silhouette")
    if len(np.unique(x, axis=0)) < k:
        return None
    assign = sk.cluster.KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(x)
    return _silhouette(sk, x, assign, seed)


def label_silhouette(x: np.ndarray, labels: list[str], seed: int = 0) -> float | None:
    """Silhouette of the true classes: do images of one label sit together, apart from others?"""
    if not 2 <= len(set(labels)) < len(x):
        return None
    return _silhouette(_sklearn("the label silhouette"), x, np.asarray(labels), seed)


def _silhouette(sk, x: np.ndarray, assign: np.ndarray, seed: int) -> float:
    return float(
        sk.metrics.silhouette_score(
            x, assign, sample_size=min(len(x), SILHOUETTE_SAMPLE), random_state=seed
        )
    )


def similarity_samples(
    image_vecs: np.ndarray, text_vecs: np.ndarray, relevant: np.ndarray, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, int]:
    """(matched cosines, unmatched cosines, number of unmatched pairs in all).

    Every matched (text, image) pair; every unmatched one while there are at most
    MAX_UNMATCHED, else a fixed random sample of about that many.
    """
    t_idx, i_idx = np.nonzero(relevant)
    matched = np.einsum("ij,ij->i", text_vecs[t_idx], image_vecs[i_idx])
    total = relevant.size - len(t_idx)
    if total <= MAX_UNMATCHED:
        parts = [
            (text_vecs[s : s + _CHUNK] @ image_vecs.T)[~relevant[s : s + _CHUNK]]
            for s in range(0, len(text_vecs), _CHUNK)
        ]
        return matched, np.concatenate(parts), total
    rng = np.random.default_rng(seed)
    t = rng.integers(len(text_vecs), size=MAX_UNMATCHED)
    i = rng.integers(len(image_vecs), size=MAX_UNMATCHED)
    keep = ~relevant[t, i]
    unmatched = np.einsum("ij,ij->i", text_vecs[t[keep]], image_vecs[i[keep]])
    return matched, unmatched, total


def suggest_threshold(matched: np.ndarray, unmatched: np.ndarray, n_unmatched: int) -> dict:
    """A search cut-off read off the matched and unmatched score distributions.

    threshold maximises F1 over the whole set: every matched pair against all n_unmatched
    unmatched ones (their share above the cut-off estimated from `unmatched`), so false
    positives weigh as much as in a search over a collection like this one. precision, recall
    and false_positive_rate are taken at it. youden_threshold maximises Youden's J = recall -
    false-positive rate instead: it ignores how many unmatched pairs there are, and sits lower.
    Each threshold lies midway into the gap below the chosen score; a result scoring at least
    the threshold is kept.
    """
    m, u = np.sort(matched), np.sort(unmatched)
    if len(m) == 0 or len(u) == 0:
        return {"threshold": None, "youden_threshold": None}
    scores = np.unique(np.concatenate([m, u]))
    recall = 1 - np.searchsorted(m, scores, "left") / len(m)
    fpr = 1 - np.searchsorted(u, scores, "left") / len(u)
    kept, false = recall * len(m), fpr * n_unmatched
    precision = kept / np.maximum(kept + false, 1e-12)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    best, youden = int(np.argmax(f1)), int(np.argmax(recall - fpr))

    def cut(i: int) -> float:
        return float(scores[i] if i == 0 else (scores[i] + scores[i - 1]) / 2)

    return {
        "threshold": cut(best),
        "f1": float(f1[best]),
        "precision": float(precision[best]),
        "recall": float(recall[best]),
        "false_positive_rate": float(fpr[best]),
        "youden_threshold": cut(youden),
        "youden_j": float(recall[youden] - fpr[youden]),
    }


def similarity_gap(matched: np.ndarray, unmatched: np.ndarray) -> dict:
    """Mean and spread of matched and unmatched cosines; gap = the difference of the means."""
    return {
        "matched_mean": float(matched.mean()),
        "matched_std": float(matched.std()),
        "unmatched_mean": float(unmatched.mean()) if len(unmatched) else None,
        "unmatched_std": float(unmatched.std()) if len(unmatched) else None,
        "gap": float(matched.mean() - unmatched.mean()) if len(unmatched) else None,
    }
