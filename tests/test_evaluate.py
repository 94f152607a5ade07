"""Evaluation metrics: recall@k on cases worked by hand and against CLIP_benchmark's definition,
quality metrics on vectors with known answers, and zero-shot / end-to-end runs on real photos."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from xmodal.engine.zeroshot import ZeroShotClassifier
from xmodal.errors import InvalidInputError, MissingExtraError
from xmodal.evaluate import (
    embed_pairs,
    evaluate,
    evaluate_embedded,
    quality,
    retrieval_metrics,
    write_report,
)
from xmodal.evaluate.classification import zero_shot_metrics
from xmodal.pairs import load_pairs


def unit(*rows):
    x = np.asarray(rows, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# -- retrieval -------------------------------------------------------------------------------------


def test_recall_on_a_case_worked_by_hand():
    images = unit([1, 0, 0], [0, 1, 0], [0, 0, 1])
    # text i describes image i. Scores (text x image):
    #   t0: 1.0  0.0  0.0   -> its image ranks 1st
    #   t1: 0.8  0.6  0.0   -> 2nd
    #   t2: 0.6  0.64 0.48  -> 3rd
    texts = unit([1, 0, 0], [0.8, 0.6, 0], [0.6, 0.64, 0.48])
    m = retrieval_metrics(images, texts, np.eye(3, dtype=bool), ks=(1, 2, 3))
    assert m["text_to_image"] == pytest.approx(
        {"recall@1": 1 / 3, "recall@2": 2 / 3, "recall@3": 1.0, "mean_rank": 2.0, "median_rank": 2}
    )
    # Image columns: i0 scores t0 1.0 first; i1 scores t2 0.64 above its own t1 0.6 (2nd);
    # i2 scores t2 0.48, the others 0 (1st).
    assert m["image_to_text"] == pytest.approx(
        {"recall@1": 2 / 3, "recall@2": 1.0, "recall@3": 1.0, "mean_rank": 4 / 3, "median_rank": 1}
    )
    assert m["mean_recall"] == pytest.approx(np.mean([1 / 3, 2 / 3, 1, 2 / 3, 1, 1]))
    assert (m["n_texts"], m["n_images"]) == (3, 3)


def test_several_captions_per_image_one_in_the_top_k_is_a_hit():
    images = unit([1, 0], [0, 1])  # A, B
    # A has captions t0, t1; B has t2, t3. t0 and t3 sit closer to the other image.
    texts = unit([0.6, 0.8], [1, 0], [0, 1], [0.8, 0.6])
    relevant = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=bool)
    m = retrieval_metrics(images, texts, relevant, ks=(1, 2))
    # Text -> image: t0 and t3 find their image 2nd.
    assert m["text_to_image"]["recall@1"] == pytest.approx(0.5)
    assert m["text_to_image"]["mean_rank"] == pytest.approx(1.5)
    # Image -> text: A ranks t1 first (t0 only third) and B ranks t2 first: both hits at 1.
    assert m["image_to_text"]["recall@1"] == 1.0
    assert m["image_to_text"]["mean_rank"] == 1.0


def clip_benchmark_recall(scores, positive, k):
    """CLIP_benchmark's zeroshot_retrieval.recall_at_k, then (> 0).mean(), written in numpy:
    the one-hot top-k of each query times its positives, counted; a query with at least one
    positive in its top k is a hit."""
    topk = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    onehot = np.zeros_like(positive, dtype=bool)
    np.put_along_axis(onehot, topk, True, axis=1)
    true_positives = (onehot & positive).sum(axis=1)
    recall = true_positives / positive.sum(axis=1)
    return float((recall > 0).mean())


def test_matches_clip_benchmark_with_five_captions_per_image():
    rng = np.random.default_rng(7)
    n_images, per_image, dim = 40, 5, 16
    images = unit(*rng.standard_normal((n_images, dim)))
    owner = np.repeat(np.arange(n_images), per_image)  # COCO-like: texts grouped by image
    texts = unit(*(images[owner] * 1.5 + rng.standard_normal((len(owner), dim))))
    relevant = owner[:, None] == np.arange(n_images)[None, :]
    ks = (1, 5, 10)
    m = retrieval_metrics(images, texts, relevant, ks=ks)
    scores = texts @ images.T
    for k in ks:
        # CLIP_benchmark: "image_retrieval" is text -> image, "text_retrieval" image -> text.
        assert m["text_to_image"][f"recall@{k}"] == pytest.approx(
            clip_benchmark_recall(scores, relevant, k)
        )
        assert m["image_to_text"][f"recall@{k}"] == pytest.approx(
            clip_benchmark_recall(scores.T, relevant.T, k)
        )
    assert 0 < m["image_to_text"]["recall@1"] < 1  # a case where the definition matters
    assert m["image_to_text"]["recall@1"] > m["text_to_image"]["recall@1"]


def test_ties_count_against_the_model():
    same = np.ones((4, 3), dtype=np.float32) / math.sqrt(3)
    m = retrieval_metrics(same, same, np.eye(4, dtype=bool), ks=(1, 4))
    assert m["text_to_image"]["recall@1"] == 0.0
    assert m["text_to_image"]["mean_rank"] == 4.0
    assert m["text_to_image"]["recall@4"] == 1.0


def test_bad_shapes_and_orphans_are_errors():
    images, texts = unit([1, 0], [0, 1]), unit([1, 0], [0, 1])
    with pytest.raises(InvalidInputError, match="relevance matrix"):
        retrieval_metrics(images, texts, np.eye(3, dtype=bool))
    with pytest.raises(InvalidInputError, match="same width"):
        retrieval_metrics(images, unit([1, 0, 0]), np.ones((1, 2), dtype=bool))
    with pytest.raises(InvalidInputError, match="1 image"):
        retrieval_metrics(images, texts, np.array([[1, 0], [1, 0]], dtype=bool))


# -- quality ---------------------------------------------------------------------------------------


def test_alignment_known_values():
    a = unit([1, 0, 0], [0, 1, 0])
    assert quality.alignment(a, a) == 0.0
    assert quality.alignment(a, unit([0, 0, 1], [0, 0, 1])) == pytest.approx(2.0)  # orthogonal
    assert quality.alignment(a, -a) == pytest.approx(4.0)  # opposite: ||2u||^2
    assert quality.alignment(a, -a, alpha=1) == pytest.approx(2.0)


def test_uniformity_and_mean_distance_known_values():
    assert quality.pairwise_stats(unit([1, 0], [1, 0], [1, 0])) == pytest.approx((0.0, 0.0))
    # Two opposite points: ||u - v||^2 = 4, log exp(-2 * 4) = -8, distance 2.
    assert quality.pairwise_stats(unit([1, 0], [-1, 0])) == pytest.approx((-8.0, 2.0))
    # An orthonormal basis: every pair at squared distance 2.
    assert quality.pairwise_stats(np.eye(6)) == pytest.approx((-4.0, math.sqrt(2)))
    assert quality.pairwise_stats(unit([1, 0])) is None


def test_pairwise_stats_subsample_large_sets_the_same_way_each_time(monkeypatch):
    x = unit(*np.random.default_rng(0).standard_normal((500, 8)))
    full = quality.pairwise_stats(x)
    monkeypatch.setattr(quality, "MAX_PAIRWISE_ROWS", 100)
    sampled = quality.pairwise_stats(x)
    assert sampled != full and sampled == quality.pairwise_stats(x)
    assert sampled == pytest.approx(full, abs=0.1)


def test_silhouettes_see_clusters():
    rng = np.random.default_rng(0)
    centres = np.eye(8)[:3] * 10
    x = np.concatenate([c + rng.normal(0, 0.1, (20, 8)) for c in centres])
    labels = [str(i) for i in range(3) for _ in range(20)]
    assert quality.kmeans_silhouette(x, 3) > 0.9
    assert quality.label_silhouette(x, labels) > 0.9
    assert quality.label_silhouette(x, list(rng.permutation(labels))) < 0.1
    assert quality.kmeans_silhouette(x[:3], 3) is None  # k must be below n
    assert quality.kmeans_silhouette(np.ones((10, 4)), 2) is None  # one point, no clusters


@pytest.mark.parametrize(
    ("module", "call"),
    [
        ("sklearn.cluster", lambda: quality.kmeans_silhouette(np.eye(4), 2)),
        ("matplotlib.figure", lambda: write_report("unused", {"models": {}}, [])),
    ],
)
def test_missing_train_extra_is_named(monkeypatch, module, call):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'xmodal\[train\]'"):
        call()


def test_default_cluster_count():
    assert [quality.default_cluster_count(n) for n in (2, 50, 800, 10**6)] == [2, 5, 20, 50]


def test_well_separated_scores_get_a_threshold_in_the_gap():
    matched = np.array([0.8, 0.85, 0.9])
    unmatched = np.array([0.1, 0.2, 0.3, 0.25])
    t = quality.suggest_threshold(matched, unmatched, n_unmatched=4)
    assert t["threshold"] == t["youden_threshold"] == pytest.approx(0.55)  # between 0.3 and 0.8
    assert (t["recall"], t["false_positive_rate"], t["precision"], t["f1"]) == (1, 0, 1, 1)
    assert t["youden_j"] == 1
    gap = quality.similarity_gap(matched, unmatched)
    assert gap["matched_mean"] == pytest.approx(0.85)
    assert gap["unmatched_mean"] == pytest.approx(0.2125)
    assert gap["gap"] == pytest.approx(0.6375)


def test_overlapping_scores_threshold_maximises_f1_over_the_whole_set():
    rng = np.random.default_rng(1)
    matched, unmatched = rng.normal(0.6, 0.1, 300), rng.normal(0.4, 0.1, 3000)
    n_unmatched = 30_000  # the sample stands for ten times as many pairs

    def at(s):
        recall, fpr = np.mean(matched >= s), np.mean(unmatched >= s)
        precision = recall * 300 / (recall * 300 + fpr * n_unmatched)
        return recall, fpr, precision, 2 * precision * recall / (precision + recall)

    t = quality.suggest_threshold(matched, unmatched, n_unmatched)
    candidates = np.r_[matched, unmatched]
    assert t["f1"] == pytest.approx(max(at(s)[3] for s in candidates))
    recall, fpr, precision, f1 = at(t["threshold"])
    assert (t["recall"], t["false_positive_rate"], t["precision"], t["f1"]) == pytest.approx(
        (recall, fpr, precision, f1)
    )
    best_j = max(at(s)[0] - at(s)[1] for s in candidates)
    assert t["youden_j"] == pytest.approx(best_j)
    assert 0.45 < t["youden_threshold"] < 0.55 < t["threshold"]  # F1 counts the many unmatched


def test_similarity_samples_all_or_a_sample_of_unmatched(monkeypatch):
    rng = np.random.default_rng(0)
    images, texts = unit(*rng.standard_normal((30, 4))), unit(*rng.standard_normal((60, 4)))
    relevant = np.arange(60)[:, None] // 2 == np.arange(30)[None, :]
    matched, unmatched, total = quality.similarity_samples(images, texts, relevant)
    assert len(matched) == 60 and total == len(unmatched) == 60 * 30 - 60
    np.testing.assert_allclose(np.sort(unmatched), np.sort((texts @ images.T)[~relevant]), 1e-6)

    monkeypatch.setattr(quality, "MAX_UNMATCHED", 500)
    _, sample, total = quality.similarity_samples(images, texts, relevant)
    assert total == 1740 and 400 < len(sample) <= 500
    distance = np.abs(sample[:, None] - (texts @ images.T)[~relevant][None, :]).min(axis=1)
    assert distance.max() < 1e-5  # every sampled score is an unmatched pair's score


# -- zero-shot -------------------------------------------------------------------------------------


def test_zero_shot_metrics_on_chosen_vectors(fake_encoder):
    labels = ["cat", "dog", "car", "moon", "tree", "boat", "cup"]
    label_vecs = ZeroShotClassifier(fake_encoder, labels).label_vectors
    # Six images that sit exactly on a label's vector; the last "dog" image sits on "car".
    truth = ["cat", "cat", "dog", "dog", "moon", "boat"]
    image_vecs = label_vecs[[0, 0, 1, 2, 3, 5]]
    m = zero_shot_metrics(fake_encoder, image_vecs, truth, labels)
    assert m["top1_accuracy"] == pytest.approx(5 / 6)
    assert m["per_class_recall"] == {"cat": 1.0, "dog": 0.5, "moon": 1.0, "boat": 1.0}
    assert m["mean_per_class_recall"] == pytest.approx(3.5 / 4)
    assert m["n_classes"] == 7 and m["top5_accuracy"] >= m["top1_accuracy"]
    few = zero_shot_metrics(fake_encoder, image_vecs[:2], ["cat", "cat"], ["cat", "dog"])
    assert few["top5_accuracy"] is None  # always 1 with five labels or fewer
    with pytest.raises(InvalidInputError, match="not among the classes"):
        zero_shot_metrics(fake_encoder, image_vecs[:1], ["horse"], labels)


# -- end to end on real photos ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def lite_en():
    from xmodal.models import load_model

    return load_model("lite-en")


@pytest.fixture
def photo_csv(tmp_path, photos):
    """Two captions per real photo, one shared caption on two photos, and one missing file."""
    rows = ["image,caption"]
    for p in photos:
        rows += [f"{p.path},a photo of a {p.label}", f"{p.path},{p.label}"]
    rows += [f"{photos[0].path},something round", f"{photos[6].path},something round"]
    rows.append(f"{tmp_path / 'gone.png'},a lost photo")
    csv = tmp_path / "pairs.csv"
    csv.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return csv


@pytest.mark.slow
def test_lite_en_zero_shot_on_a_label_tree(lite_en, photo_tree, one_torch_thread):
    m = evaluate(lite_en, load_pairs(photo_tree))
    zs = m["zero_shot"]
    assert zs["n_classes"] == 14
    assert zs["top1_accuracy"] >= 0.7  # lite-en labels most of these photos right
    assert zs["top5_accuracy"] >= zs["top1_accuracy"]
    assert zs["mean_per_class_recall"] == pytest.approx(zs["top1_accuracy"])  # one per class
    assert m["quality"]["silhouette_k"] == 14 and m["quality"]["silhouette_text"] is None


@pytest.mark.slow
def test_lite_en_evaluate_on_captioned_photos(lite_en, photo_csv, one_torch_thread):
    pairset = load_pairs(photo_csv)
    assert len(pairset.skipped) == 1
    emb = embed_pairs(lite_en, pairset)
    assert (len(emb.images), len(emb.texts)) == (14, 29)
    m = evaluate_embedded(lite_en, emb)
    r = m["retrieval"]
    for direction in ("text_to_image", "image_to_text"):
        d = r[direction]
        assert d["recall@1"] <= d["recall@5"] <= d["recall@10"] <= 1
        assert d["recall@1"] >= 0.5  # chance is about 1/14
    assert r["curve"]["k"] == [1, 2, 3, 5, 10, 20]
    q = m["quality"]
    assert q["similarity"]["gap"] > 0
    assert q["similarity"]["matched_mean"] > q["suggested_threshold"]["threshold"]
    assert q["suggested_threshold"]["threshold"] > q["similarity"]["unmatched_mean"]
    assert 0 <= q["alignment"] <= 4 and q["uniformity_image"] < 0
    assert m["zero_shot"] is None and m["counts"]["pairs"] == 30
