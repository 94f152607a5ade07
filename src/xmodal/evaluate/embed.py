"""Embed a pair set once: every unique image (or sound) and caption through one encoder."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xmodal.audio import is_audio_file
from xmodal.errors import AudioLoadError, ImageLoadError, InvalidInputError
from xmodal.images import load_image
from xmodal.models.base import Encoder
from xmodal.pairs import PairSet, group_pairs


@dataclass
class EmbeddedPairs:
    model: str
    images: list[Path]
    texts: list[str]
    relevant: np.ndarray  # bool [n_texts, n_images]
    image_vecs: np.ndarray  # float32 [n_images, dim], unit rows
    text_vecs: np.ndarray  # float32 [n_texts, dim], unit rows
    image_labels: list[str | None]  # per image: its class in a label tree, else None
    labels: list[str] | None  # the classes of a label tree
    n_pairs: int
    skipped: list[tuple[str, str]]  # images that could not be read, with the reason


def embed_pairs(
    encoder: Encoder, pairset: PairSet, *, batch_size: int | None = None, progress: bool = False
) -> EmbeddedPairs:
    """Embed each unique image and caption once; unreadable images are skipped with a reason,
    with every pair that needs them."""
    size = batch_size or encoder.batch_size
    unique = list(dict.fromkeys(p.image for p in pairset.pairs))
    vectors: dict[Path, np.ndarray] = {}
    skipped: list[tuple[str, str]] = []
    for batch in _progress(_batches(unique, size), len(unique), progress):
        loaded = []
        for path in batch:
            if is_audio_file(path):  # sounds are heard one by one: clips differ in length
                try:
                    vectors[path] = encoder.embed_audio([path])[0]
                except AudioLoadError as e:
                    skipped.append((pairset.relative(path), e.reason))
                continue
            try:
                loaded.append((path, load_image(path)))
            except ImageLoadError as e:
                skipped.append((pairset.relative(path), e.reason))
        if loaded:
            vecs = encoder.embed_images([image for _, image in loaded], batch_size=size)
            vectors.update((path, vec) for (path, _), vec in zip(loaded, vecs))
    pairs = [p for p in pairset.pairs if p.image in vectors]
    if not pairs:
        raise InvalidInputError(f"none of the {len(unique)} images could be read")
    images, texts, relevant = group_pairs(pairs)
    label_of = {p.image: p.label for p in pairs}
    return EmbeddedPairs(
        model=encoder.name,
        images=images,
        texts=texts,
        relevant=relevant,
        image_vecs=np.stack([vectors[path] for path in images]),
        text_vecs=encoder.embed_texts(texts, batch_size=size, progress=progress),
        image_labels=[label_of[path] for path in images],
        labels=sorted({p.label for p in pairs if p.label}) or None,
        n_pairs=len(pairs),
        skipped=skipped,
    )


def _batches(items: Sequence, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _progress(batches, total: int, show: bool):
    if not show:
        yield from batches
        return
    from tqdm import tqdm

    with tqdm(total=total, unit="image", desc="embedding images", leave=False) as bar:
        for batch in batches:
            yield batch
            bar.update(len(batch))
