"""Every metric for one model on one pair set, as a plain JSON-ready dict."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from xmodal.audio import is_audio_file
from xmodal.evaluate.classification import zero_shot_metrics
from xmodal.evaluate.embed import EmbeddedPairs, embed_pairs
from xmodal.evaluate.quality import (
    alignment,
    default_cluster_count,
    kmeans_silhouette,
    label_silhouette,
    pairwise_stats,
    similarity_gap,
    similarity_samples,
    suggest_threshold,
)
from xmodal.evaluate.retrieval import recall_at, retrieval_ranks, summarize_ranks
from xmodal.models.base import Encoder
from xmodal.pairs import PairSet

RECALL_KS = (1, 5, 10)
# Points of the recall@k curves in the report.
CURVE_KS = (1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000)


def dataset_summary(pairset: PairSet) -> dict:
    images, texts = {p.image for p in pairset.pairs}, {p.caption for p in pairset.pairs}
    return {
        "source": str(pairset.source),
        "kind": pairset.kind,
        "pairs": len(pairset.pairs),
        "images": len(images),
        "captions": len(texts),
        "labels": len(pairset.labels) if pairset.labels is not None else None,
        "skipped": len(pairset.skipped),
        "fingerprint": pairset.fingerprint(),
    }


def evaluate(
    encoder: Encoder,
    pairset: PairSet,
    *,
    templates: Sequence[str] | None = None,
    batch_size: int | None = None,
    progress: bool = False,
) -> dict:
    """Embed `pairset` once with `encoder` and return every metric (see evaluate_embedded)."""
    embedded = embed_pairs(encoder, pairset, batch_size=batch_size, progress=progress)
    return evaluate_embedded(encoder, embedded, templates=templates)


def evaluate_embedded(
    encoder: Encoder, emb: EmbeddedPairs, *, templates: Sequence[str] | None = None
) -> dict:
    """Metrics from embeddings made by `encoder` (which embeds the zero-shot label prompts).

    retrieval: recall@1/5/10 and ranks both ways, plus the recall@k curve.
    zero_shot: accuracy on label trees with two or more classes, else None.
    quality: alignment, uniformity, mean pairwise distance and silhouettes per modality,
    matched vs unmatched cosine, and a suggested search threshold.
    """
    t2i, i2t = retrieval_ranks(emb.image_vecs, emb.text_vecs, emb.relevant)
    retrieval = summarize_ranks(t2i, i2t, RECALL_KS)
    ks = [k for k in CURVE_KS if k <= max(len(emb.images), len(emb.texts))]
    retrieval["curve"] = {
        "k": ks,
        "text_to_image": recall_at(t2i, ks),
        "image_to_text": recall_at(i2t, ks),
    }
    zero_shot = None
    if emb.labels and len(emb.labels) >= 2:
        zero_shot = zero_shot_metrics(
            encoder,
            emb.image_vecs,
            emb.image_labels,
            emb.labels,
            templates,
            is_sound=[is_audio_file(path) for path in emb.images],
        )
    return {
        "model": emb.model,
        "counts": {
            "pairs": emb.n_pairs,
            "images": len(emb.images),
            "texts": len(emb.texts),
            "unreadable_images": len(emb.skipped),
        },
        "retrieval": retrieval,
        "zero_shot": zero_shot,
        "quality": quality_metrics(emb),
    }


def quality_metrics(emb: EmbeddedPairs) -> dict:
    t_idx, i_idx = np.nonzero(emb.relevant)
    out: dict = {"alignment": alignment(emb.image_vecs[i_idx], emb.text_vecs[t_idx])}
    k = len(emb.labels) if emb.labels else default_cluster_count(len(emb.images))
    out["silhouette_k"] = k
    for name, vecs in (("image", emb.image_vecs), ("text", emb.text_vecs)):
        stats = pairwise_stats(vecs)
        out[f"uniformity_{name}"] = stats[0] if stats else None
        out[f"mean_distance_{name}"] = stats[1] if stats else None
        out[f"silhouette_{name}"] = kmeans_silhouette(vecs, k)
    out["label_silhouette_image"] = (
        label_silhouette(emb.image_vecs, emb.image_labels) if emb.labels else None
    )
    matched, unmatched, n_unmatched = similarity_samples(
        emb.image_vecs, emb.text_vecs, emb.relevant
    )
    out["similarity"] = similarity_gap(matched, unmatched)
    out["suggested_threshold"] = suggest_threshold(matched, unmatched, n_unmatched)
    return out
