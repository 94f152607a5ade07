"""Pairs -> model inputs, prepared once: each distinct image and caption goes through the
adapter's preprocessing one time, and pairs become (image row, text row) index pairs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from xmodal.errors import ImageLoadError, InvalidInputError
from xmodal.images import load_image
from xmodal.pairs import Pair, group_pairs
from xmodal.train.adapters.base import Inputs, TrainAdapter

# Images decoded at once: bounds the memory held as decoded pictures.
_CHUNK = 64


@dataclass
class Prepared:
    images: torch.Tensor  # (n_images, ...) image-tower input rows
    texts: Inputs  # (n_texts, ...) text-tower input rows
    pair_image: np.ndarray  # (n_pairs,) image row of each pair
    pair_text: np.ndarray  # (n_pairs,) text row of each pair
    relevant: np.ndarray  # (n_texts, n_images) bool: caption t describes image i

    def __len__(self) -> int:
        return len(self.pair_image)


def prepare(
    adapter: TrainAdapter,
    pairs: list[Pair],
    skipped: list[tuple[str, str]],
    what: str,
    progress: bool = False,
) -> Prepared:
    """Inputs for `pairs` (the `what` set); pairs whose image cannot be read are dropped and
    listed in `skipped`."""
    paths = list(dict.fromkeys(p.image for p in pairs))
    rows, unreadable = [], set()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(paths), unit="image", desc=f"preparing {what} images", leave=False)
    for start in range(0, len(paths), _CHUNK):
        loaded = []
        for path in paths[start : start + _CHUNK]:
            try:
                loaded.append(load_image(path))
            except ImageLoadError as e:
                unreadable.add(path)
                skipped.append((str(path), e.reason))
        if loaded:
            rows.append(adapter.prepare_images(loaded))
        if bar is not None:
            bar.update(len(paths[start : start + _CHUNK]))
    if bar is not None:
        bar.close()
    kept = [p for p in pairs if p.image not in unreadable]
    if len(kept) < 2:
        raise InvalidInputError(f"the {what} set has {len(kept)} usable pair(s); it needs 2+")
    images, texts, relevant = group_pairs(kept)
    image_row = {path: i for i, path in enumerate(images)}
    text_row = {text: i for i, text in enumerate(texts)}
    return Prepared(
        images=torch.cat(rows),
        texts=adapter.prepare_texts(texts),
        pair_image=np.array([image_row[p.image] for p in kept], dtype=np.int64),
        pair_text=np.array([text_row[p.caption] for p in kept], dtype=np.int64),
        relevant=relevant,
    )


def batches(n: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The pair indices of each batch of one epoch: a permutation fixed by (seed, epoch), so a
    resumed run sees exactly the order an uninterrupted one would. A last batch of one pair (no
    negatives) is left out."""
    order = np.random.default_rng([seed, epoch]).permutation(n)
    out = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    return [b for b in out if len(b) >= 2]
