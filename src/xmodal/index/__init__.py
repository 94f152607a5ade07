"""Vector indexes: caller-chosen int64 ids -> unit vectors, searched by inner product.

index = create_index(dim, "auto", expected_size=n)   # or "flat", "hnsw", "ivf", "ivf-pq"
index.add(ids, vectors)
hits = index.search(queries, k=10, filter=allowed_ids)  # one Hits(ids, scores) per query
index.save(path); index = load_index(path)
"""

from xmodal.index.base import Hits, VectorIndex
from xmodal.index.factory import (
    KINDS,
    build,
    choose_kind,
    create_index,
    estimate_bytes,
    load_index,
    parse_index_spec,
)
from xmodal.index.fileformat import IndexFileError

__all__ = [
    "KINDS",
    "Hits",
    "IndexFileError",
    "VectorIndex",
    "build",
    "choose_kind",
    "create_index",
    "estimate_bytes",
    "load_index",
    "parse_index_spec",
]
