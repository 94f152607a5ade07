"""Words that describe an image, scored by the encoder: everyday objects, ImageNet's classes
(details), scenes, colours, styles and lighting (data/tags.txt), the best of each group kept
(as CLIP Interrogator builds a prompt from its lists). The vocabulary is embedded once per
encoder."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

# Prompt per group: the encoder matches "a photo of a cat" better than a bare "cat".
PROMPTS = {
    "object": "{}",
    "detail": "a photo of a {}",
    "scene": "a photo of {}",
    "colour": "a {} image",
    "style": "{}",
    "lighting": "a photo in {}",
}
GROUPS = tuple(PROMPTS)
_CACHE_LOCK = threading.Lock()
_EMBEDDED: dict[str, np.ndarray] = {}  # cache key (see _embedded) -> vectors
_PROBE = "a photo of something"


@dataclass(frozen=True)
class Tag:
    group: str
    text: str
    score: float


@lru_cache(maxsize=1)
def vocabulary() -> dict[str, tuple[str, ...]]:
    """Group -> tags: data/tags.txt, and ImageNet's first class names as `detail`."""
    groups: dict[str, list[str]] = {g: [] for g in GROUPS}
    groups["detail"] = _imagenet_names()
    group = None
    text = resources.files("xmodal.apps").joinpath("data/tags.txt").read_text("utf-8")
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            group = line.strip("[]")
        elif group in groups and line not in groups[group]:
            groups[group].append(line)
    return {g: tuple(v) for g, v in groups.items()}


def _imagenet_names() -> list[str]:
    data = resources.files("xmodal.models.lite").joinpath("data/imagenet_classes.tsv")
    names = []
    for row in data.read_text("utf-8").splitlines():
        cols = row.split("\t")
        if len(cols) > 1:
            name = cols[1].split(",")[0].strip()
            if name and name not in names:
                names.append(name)
    return names


def _embedded(encoder) -> np.ndarray:
    """The vocabulary's vectors: in memory per model, and on disk under the cache folder keyed by
    the model's name and a probe embedding (so retrained weights under one name never reuse
    stale vectors). Embedding ~1100 prompts costs seconds per process; loading them, ~1 ms."""
    prompts = [PROMPTS[g].format(t) for g in GROUPS for t in vocabulary()[g]]
    probe = np.round(encoder.embed_texts([_PROBE])[0], 4).tobytes()
    digest = hashlib.blake2b(digest_size=12)
    for part in (encoder.name.encode(), probe, "\n".join(prompts).encode()):
        digest.update(part)
    key = digest.hexdigest()
    with _CACHE_LOCK:
        if key not in _EMBEDDED:
            vectors = _from_disk(key)
            if vectors is None or vectors.shape != (len(prompts), encoder.dim):
                vectors = _to_disk(key, encoder.embed_texts(prompts))
            _EMBEDDED[key] = vectors
        return _EMBEDDED[key]


def _cache_file(key: str):
    from xmodal.models.lite.runtime import cache_dir

    return cache_dir() / "tags" / f"{key}.npy"


def _from_disk(key: str) -> np.ndarray | None:
    try:
        return np.load(_cache_file(key), allow_pickle=False)
    except (OSError, ValueError):  # not cached yet, or a torn file: embed again
        return None


def _to_disk(key: str, vectors: np.ndarray) -> np.ndarray:
    from xmodal.atomic import atomic_write

    path = _cache_file(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, fsync=False) as f:
            np.save(f, vectors, allow_pickle=False)
    except OSError:  # a read-only cache folder only costs the next process the embedding
        pass
    return vectors


def best_tags(encoder, image_vector: np.ndarray, *, objects: int = 3) -> list[Tag]:
    """The `objects` best objects, the 2 best details, then the best tag of every other group,
    for one image vector (L2-normalised)."""
    scores = _embedded(encoder) @ np.asarray(image_vector, dtype=np.float32)
    tags, start = [], 0
    for group in GROUPS:
        names = vocabulary()[group]
        part = scores[start : start + len(names)]
        start += len(names)
        keep = objects if group == "object" else 2 if group == "detail" else 1
        for i in np.argsort(-part)[:keep]:
            tags.append(Tag(group, names[i], float(part[i])))
    return tags
