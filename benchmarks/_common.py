"""Shared pieces of the lite benchmarks: evaluation sets, cached on disk under benchmarks/out."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from xmodal.samples import DISTRACTOR_LABELS, clipart_images, emoji_images, sample_photos

OUT = Path(__file__).parent / "out"
HINDI_CAT = "बिल्ली की फोटो"  # "a photo of a cat"
# Hindi queries for sample photos (photo name -> query), to check the multilingual tower.
HINDI_QUERIES = {
    "chelsea": HINDI_CAT,
    "horse": "घोड़ा",  # horse
    "rocket": "रॉकेट",  # rocket
    "flower": "फूल",  # flower
    "clock": "घड़ी",  # clock
    "coins": "सिक्के",  # coins
    "moon": "चाँद",  # moon
    "coffee": "कॉफ़ी का कप",  # cup of coffee
    "stereo_motorcycle": "मोटरसाइकिल",  # motorcycle
    "astronaut": "अंतरिक्ष यात्री",  # astronaut
    "china": "मंदिर",  # temple
}


def eval_sets(cap: int = 500, split: str = "test") -> dict[str, list]:
    """photos (14), emoji and clip-art of one split (every n-th so at most `cap` images each).

    Each item has .path and a caption/label; photos are matched to labels, the other two to
    their captions.
    """
    sets = {"photos": sample_photos(OUT / "photos")}
    for name, items in (
        ("emoji", emoji_images(OUT / "emoji", split=split)),
        ("clipart", clipart_images(split=split)),
    ):
        step = max(1, -(-len(items) // cap))
        sets[name] = items[::step]
    return sets


def photo_labels(photos) -> list[str]:
    return [p.label for p in photos] + list(DISTRACTOR_LABELS)


_MEMORY: dict[str, np.ndarray] = {}


def cached(name: str, key: str, compute) -> np.ndarray:
    """compute() once per key: kept in memory and in OUT/cache/name-hash.npy across runs."""
    digest = hashlib.blake2b(key.encode(), digest_size=6).hexdigest()
    path = OUT / f"cache/{name}-{digest}.npy"
    if path.name not in _MEMORY:
        if not path.exists():
            value = np.asarray(compute())
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, value)
        _MEMORY[path.name] = np.load(path)
    return _MEMORY[path.name]


def recall_at(sim: np.ndarray, query_captions: list[str], image_captions: list[str], ks):
    """Text->image recall@k: a hit when an image with the query's caption is among the top k."""
    order = np.argsort(-sim, axis=1, kind="stable")
    captions = np.asarray(image_captions)
    hits = {k: 0 for k in ks}
    for qi, caption in enumerate(query_captions):
        relevant = captions[order[qi]] == caption
        first = int(np.argmax(relevant))
        for k in ks:
            hits[k] += first < k
    return {k: hits[k] / len(query_captions) for k in ks}


def ensemble(embed, labels: list[str], templates) -> np.ndarray:
    """Zero-shot label vectors: mean of the unit vectors of each template, renormalised."""
    vecs = np.stack([embed([t.format(label) for label in labels]) for t in templates])
    mean = vecs.mean(axis=0)
    return mean / np.linalg.norm(mean, axis=1, keepdims=True)
