"""Cross-modal retrieval metrics: recall@k and the rank of the first relevant item.

A query is a hit at k when ANY of its relevant items is among the k best-scored candidates, as
in LAION's CLIP_benchmark: with several captions per image, image->text retrieval finds the
image's captions, and one of them in the top k is enough. Rows are unit vectors, so the score
is the dot product (cosine). A relevant item tied with an irrelevant one ranks after it, so a
model that scores everything the same cannot look perfect.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from xmodal.errors import InvalidInputError

# Queries scored at once: bounds memory at CHUNK x n_candidates floats.
_CHUNK = 1024


def first_relevant_ranks(
    queries: np.ndarray, candidates: np.ndarray, relevant: np.ndarray
) -> np.ndarray:
    """[n_queries] 1-based rank of each query's best-ranked relevant candidate.

    relevant: bool [n_queries, n_candidates]; every query needs at least one True.
    """
    ranks = np.empty(len(queries), dtype=np.int64)
    for start in range(0, len(queries), _CHUNK):
        scores = queries[start : start + _CHUNK] @ candidates.T
        rel = relevant[start : start + _CHUNK]
        best = np.where(rel, scores, -np.inf).max(axis=1, keepdims=True)
        ahead = np.where(rel, -np.inf, scores) >= best  # irrelevant items at least as good
        ranks[start : start + len(scores)] = 1 + ahead.sum(axis=1)
    return ranks


def recall_at(ranks: np.ndarray, ks: Sequence[int]) -> list[float]:
    """Share of queries whose first relevant item is within the top k, for each k."""
    return [float(np.mean(ranks <= k)) for k in ks]


def _summary(ranks: np.ndarray, ks: Sequence[int]) -> dict[str, float]:
    out = {f"recall@{k}": r for k, r in zip(ks, recall_at(ranks, ks))}
    out["mean_rank"] = float(ranks.mean())
    out["median_rank"] = float(np.median(ranks))
    return out


def check_relevance(image_vecs: np.ndarray, text_vecs: np.ndarray, relevant: np.ndarray) -> None:
    if image_vecs.ndim != 2 or text_vecs.ndim != 2 or image_vecs.shape[1] != text_vecs.shape[1]:
        raise InvalidInputError(
            f"image vectors {image_vecs.shape} and text vectors {text_vecs.shape} must be "
            "2-D with the same width"
        )
    if relevant.shape != (len(text_vecs), len(image_vecs)):
        raise InvalidInputError(
            f"relevance matrix is {relevant.shape}, expected (n_texts, n_images) = "
            f"({len(text_vecs)}, {len(image_vecs)})"
        )
    if len(text_vecs) == 0 or len(image_vecs) == 0:
        raise InvalidInputError("retrieval needs at least one text and one image")
    for axis, what in ((1, "text"), (0, "image")):
        orphans = np.flatnonzero(~relevant.any(axis=axis))
        if orphans.size:
            raise InvalidInputError(
                f"{orphans.size} {what}(s) have no relevant match, e.g. {what} #{orphans[0]}"
            )


def retrieval_ranks(
    image_vecs: np.ndarray, text_vecs: np.ndarray, relevant: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(text->image ranks [n_texts], image->text ranks [n_images]) of the first relevant item."""
    image_vecs = np.asarray(image_vecs, dtype=np.float32)
    text_vecs = np.asarray(text_vecs, dtype=np.float32)
    relevant = np.asarray(relevant, dtype=bool)
    check_relevance(image_vecs, text_vecs, relevant)
    return (
        first_relevant_ranks(text_vecs, image_vecs, relevant),
        first_relevant_ranks(image_vecs, text_vecs, relevant.T),
    )


def summarize_ranks(t2i: np.ndarray, i2t: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict:
    """recall@k, mean and median rank per direction; `mean_recall` averages every recall@k of
    both directions: one number to compare checkpoints by."""
    per_direction = {"text_to_image": _summary(t2i, ks), "image_to_text": _summary(i2t, ks)}
    recalls = [d[f"recall@{k}"] for d in per_direction.values() for k in ks]
    return {
        **per_direction,
        "mean_recall": float(np.mean(recalls)),
        "n_texts": len(t2i),
        "n_images": len(i2t),
    }


def retrieval_metrics(
    image_vecs: np.ndarray,
    text_vecs: np.ndarray,
    relevant: np.ndarray,
    ks: Sequence[int] = (1, 5, 10),
) -> dict:
    """Text->image and image->text recall@k, mean and median rank of the first relevant item.

    image_vecs [n_images, d], text_vecs [n_texts, d]: unit rows. relevant: bool
    [n_texts, n_images], True where the text is a caption of the image (see
    xmodal.pairs.group_pairs). Returns {"text_to_image": {"recall@1": ..., "mean_rank": ...,
    "median_rank": ...}, "image_to_text": {...}, "mean_recall", "n_texts", "n_images"}.
    """
    return summarize_ranks(*retrieval_ranks(image_vecs, text_vecs, relevant), ks)
