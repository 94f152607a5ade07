"""Embedding shards into a collection: rows and vectors stored as they are, nothing encoded.

The collection's index follows whatever kind it uses (FAISS or Milvus): rows go through the
catalog under the writer lock, and the index is brought in step from them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from xmodal.distributed.shards import read_manifest, read_shards
from xmodal.engine.collection import Collection
from xmodal.errors import ModelMismatchError


@dataclass(frozen=True)
class ImportReport:
    added: int
    replaced: int  # a path stored before with other bytes
    unchanged: int  # the same path and bytes stored already (an import run twice)


def import_shards(
    collection: Collection, folder: str | os.PathLike, *, wait: bool = False
) -> ImportReport:
    """Store the shards in `folder` into `collection`; ModelMismatchError for shards of another
    model or dimension, before anything is written. Importing twice adds nothing twice."""
    manifest = read_manifest(folder)
    if manifest.model != collection.model_name:
        raise ModelMismatchError(
            f"{folder} holds embeddings of model {manifest.model} ({manifest.dim}-d), and "
            f"{collection.db_path} is indexed with {collection.model_name}: import them into a "
            f"collection of that model (xmodal import {folder} --db NEWDIR --model "
            f"{manifest.model})"
        )
    added, replaced, unchanged = collection.store_rows(read_shards(folder), wait=wait)
    # The roots that exist here are recorded, so a later `xmodal index` rescans them.
    for root in manifest.roots:
        if Path(root).is_dir():
            collection.add_root(root)
    return ImportReport(added, replaced, unchanged)
