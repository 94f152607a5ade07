"""Move a collection's index between FAISS kinds and Milvus, from its stored vectors.

The catalog holds every vector, so nothing is encoded: `migrate` reads them in batches and
writes them where the index goes. Onto Milvus the batches land as they go and the catalog keeps
using the old index until the last one is in; a killed migration is rerun and only uploads what
is missing (the ids already in the Milvus collection are kept). The writer lock is held
throughout, so the catalog cannot change under it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from xmodal.engine.collection import Collection
from xmodal.errors import InvalidInputError
from xmodal.index import KINDS, parse_index_spec
from xmodal.index.milvus import is_remote_uri, milvus_spec


@dataclass(frozen=True)
class MigrateReport:
    spec: str  # the index spec the collection now uses (kept for later runs)
    kind: str
    count: int  # vectors in the index


def target_spec(to: str) -> str:
    """--to as an index spec: a Milvus URI (http(s)://..., a path ending in .db), a FAISS
    kind (flat, hnsw, ivf, ivf-pq, with parameters), or a milvus spec."""
    to = to.strip()
    if is_remote_uri(to) or to.endswith(".db"):
        return milvus_spec(None, to)
    kind, params = parse_index_spec(to)
    if kind == "auto":
        raise InvalidInputError("migrate needs a kind or a Milvus URI, not auto")
    if KINDS[kind].remote and "uri" in params:
        # The URI made absolute: the spec is kept and reused from any folder.
        rest = ",".join(f"{k}={v}" for k, v in params.items() if k != "uri")
        return milvus_spec(f"{kind}:{rest}" if rest else kind, str(params["uri"]))
    return to


def migrate(
    db: str | os.PathLike,
    to: str,
    *,
    batch_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> MigrateReport:
    """Move collection `db`'s index to `to` (see target_spec); then `db` searches there.

    CollectionBusyError if another process writes the collection; progress(done, total)."""
    spec = target_spec(to)
    with Collection.open(db, create=False) as collection:
        count = collection.move_index(spec, batch_size=batch_size, progress=progress)
        return MigrateReport(spec, parse_index_spec(spec)[0], count)
