"""Passes over a collection's indexed images after indexing: OCR (the words printed on them) and
moderation verdicts. Each reads what is missing, in worker threads, and commits in small batches
under the caller's writer lock, so a killed run keeps what it finished and the next run does the
rest. Neither changes a vector, so the ANN index is left as it is.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from xmodal.catalog import Catalog
from xmodal.errors import ImageLoadError
from xmodal.images import load_image

_COMMIT_EVERY = 16
# OCR reads small print, so images are decoded well above the model's input size.
_OCR_MIN_SIDE = 1600


def read_printed_words(
    catalog: Catalog, *, workers: int, progress: bool = False, reader: Any = None
) -> int:
    """OCR every image not read yet (one per distinct content); returns how many were read.
    An image that cannot be decoded now is marked read with no words (it was indexed, so it
    decoded once; it is read again when it changes)."""
    from xmodal.ocr import OcrReader

    ocr = reader or OcrReader()
    ids = catalog.ids_without_ocr()

    def one(item_id: int, path: str) -> tuple[int, str]:
        try:
            image = load_image(path, min_side=_OCR_MIN_SIDE)
        except (ImageLoadError, OSError):
            return item_id, ""
        return item_id, ocr.read(image).text

    done = 0
    for batch in _batches(catalog, ids, one, workers, progress, "reading text"):
        with catalog.transaction():
            catalog.set_ocr(batch)
        done += len(batch)
    return done


def judge(catalog: Catalog, moderator: Any, *, workers: int, progress: bool = False) -> int:
    """Store a verdict for every image not judged under `moderator`'s policy; returns how many."""
    fingerprint = moderator.fingerprint
    ids = catalog.ids_without_verdict(fingerprint)

    def one(item_id: int, path: str) -> tuple[int, Any]:
        try:
            image = load_image(path, min_side=256)
        except (ImageLoadError, OSError):
            image = None  # judged on its stored vector alone
        return item_id, image

    done = 0
    for batch in _batches(catalog, ids, one, workers, progress, "moderating"):
        found, vectors = catalog.vectors([i for i, _ in batch])
        images = dict(batch)
        verdicts = moderator.judge(vectors, [images[int(i)] for i in found])
        with catalog.transaction():
            catalog.set_verdicts(
                (int(i), fingerprint, v.flagged, v.scores) for i, v in zip(found, verdicts)
            )
        done += len(found)
    return done


def _batches(
    catalog: Catalog,
    ids: list[int],
    one: Callable[[int, str], tuple[int, Any]],
    workers: int,
    progress: bool,
    label: str,
) -> Iterator[list[tuple[int, Any]]]:
    if not ids:
        return
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(ids), unit="image", desc=label)
    try:
        with ThreadPoolExecutor(max(1, workers), thread_name_prefix="xmodal-enrich") as pool:
            for start in range(0, len(ids), _COMMIT_EVERY):
                chunk = ids[start : start + _COMMIT_EVERY]
                paths = catalog.paths(chunk)
                present = [i for i in chunk if i in paths]
                batch = list(pool.map(lambda i, p=paths: one(i, os.fsdecode(p[i])), present))
                yield batch
                if bar is not None:
                    bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
