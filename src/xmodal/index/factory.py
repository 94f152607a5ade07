"""Index kinds by name, described as data; a choice of kind from size and memory; loading.

Kinds users type:
  flat     exact inner product (IndexIDMap2(IndexFlatIP)): small collections
  hnsw     HNSW graph over exact vectors: large collections when memory allows
  ivf      inverted lists of 8-bit scalar-quantised vectors (SQ8): large and memory-tight
  ivf-pq   inverted lists of product-quantised vectors: the tightest memory
  milvus   the vectors in Milvus (index.milvus): a milvus-lite file or a server; never chosen
           by auto, named with its URI (milvus:uri=./vectors.db,index=hnsw)
  auto     choose_kind() picks one of the flat/hnsw/ivf kinds from the expected size and a
           memory budget
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from xmodal.errors import InvalidInputError
from xmodal.index.base import IdsLike, VectorIndex
from xmodal.index.fileformat import IndexFileError, open_file

# Exact search while a query scans at most this many bytes of vectors: measured ~5 ms per 40 MB
# on one core of an AMD EPYC (benchmarks/index_search.py, 20k x 512), so ~16 ms at the limit,
# i.e. 65k vectors of 512 dimensions (43k of 768, 87k of 384).
FLAT_MAX_SCAN_BYTES = 128 * 2**20
_ID_BYTES = 8  # each backend keeps a sorted copy of the live ids


def _flat_bytes(n: int, dim: int, p: dict[str, Any]) -> float:
    # vectors + IndexIDMap2's id array and reverse hash map
    return n * (4 * dim + 8 + 48 + _ID_BYTES)


def _hnsw_bytes(n: int, dim: int, p: dict[str, Any]) -> float:
    # vectors + ~2m+1 int32 neighbours per node + level/offset bookkeeping + label maps
    return n * (4 * dim + 4 * (2 * p["m"] + 1) + 12 + 24 + _ID_BYTES)


def _ivf_bytes(n: int, dim: int, p: dict[str, Any]) -> float:
    code = dim if p["encoding"] == "sq8" else math.ceil(p["pq_m"] * p["pq_bits"] / 8)
    codebooks = 4 * dim * 2 ** p["pq_bits"] if p["encoding"] == "pq" else 8 * dim
    return n * (code + 8 + _ID_BYTES) + 4 * dim * p["nlist"] + codebooks


def _no_defaults(dim: int, expected_size: int) -> dict[str, Any]:
    return {}


def _hnsw_defaults(dim: int, expected_size: int) -> dict[str, Any]:
    return {"m": 32, "ef_construction": 128, "ef_search": 64}


def _ivf_defaults(encoding: str) -> Callable[[int, int], dict[str, Any]]:
    def defaults(dim: int, expected_size: int) -> dict[str, Any]:
        from xmodal.index.ivf import default_nlist, default_pq_m

        nlist = default_nlist(expected_size)
        params = {"nlist": nlist, "nprobe": min(nlist, max(8, nlist // 16)), "encoding": encoding}
        if encoding == "pq":
            params.update(pq_m=default_pq_m(dim), pq_bits=8)
        return params

    return defaults


def _milvus_bytes(n: int, dim: int, p: dict[str, Any]) -> float:
    # the vectors live in Milvus: this process keeps the live ids
    return n * _ID_BYTES


@dataclass(frozen=True)
class IndexKind:
    name: str
    target: str  # "module:Class"
    exact: bool
    defaults: Callable[[int, int], dict[str, Any]]  # (dim, expected_size) -> constructor params
    estimate: Callable[[int, int, dict[str, Any]], float]  # (n, dim, params) -> bytes
    summary: str
    # The vectors live on a server that outlives this process (its saved file is a pointer).
    remote: bool = False

    def load_class(self) -> type[VectorIndex]:
        module, _, cls = self.target.partition(":")
        return getattr(importlib.import_module(module), cls)


KINDS: dict[str, IndexKind] = {
    k.name: k
    for k in [
        IndexKind(
            "flat", "xmodal.index.flat:FlatIndex", True, _no_defaults, _flat_bytes, "exact scan"
        ),
        IndexKind(
            "hnsw", "xmodal.index.hnsw:HNSWIndex", False, _hnsw_defaults, _hnsw_bytes, "HNSW graph"
        ),
        IndexKind(
            "ivf", "xmodal.index.ivf:IVFIndex", False, _ivf_defaults("sq8"), _ivf_bytes, "IVF SQ8"
        ),
        IndexKind(
            "ivf-pq", "xmodal.index.ivf:IVFIndex", False, _ivf_defaults("pq"), _ivf_bytes, "IVF PQ"
        ),
        IndexKind(
            "milvus",
            "xmodal.index.milvus:MilvusIndex",
            True,  # with its default index=flat; hnsw and ivf are approximate
            _no_defaults,
            _milvus_bytes,
            "Milvus (milvus-lite file or server)",
            remote=True,
        ),
    ]
}


def _kind(name: str) -> IndexKind:
    if name not in KINDS:
        raise InvalidInputError(f"unknown index kind '{name}': use auto, {', '.join(KINDS)}")
    return KINDS[name]


def estimate_bytes(kind: str, n: int, dim: int, **params) -> int:
    """Roughly how much memory `kind` needs for n vectors of dim (default params)."""
    k = _kind(kind)
    return int(k.estimate(n, dim, {**k.defaults(dim, n), **params}))


def choose_kind(n: int, dim: int, max_memory_bytes: int | None = None) -> str:
    """Exact while a scan is cheap, else HNSW, else compressed IVF when memory is tight."""
    small = n * dim * 4 <= FLAT_MAX_SCAN_BYTES
    for name in ["flat" if small else "hnsw", "ivf", "ivf-pq"]:
        if max_memory_bytes is None or estimate_bytes(name, n, dim) <= max_memory_bytes:
            return name
    raise InvalidInputError(
        f"{n} vectors of dimension {dim} need about {estimate_bytes('ivf-pq', n, dim):,} bytes "
        f"even compressed (ivf-pq), more than the {max_memory_bytes:,} allowed"
    )


def parse_index_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """'ivf:nlist=4096,nprobe=24' -> ('ivf', {'nlist': 4096, 'nprobe': 24}); 'hnsw' -> ('hnsw', {}).

    Values are read as int, else float, else kept as text; names must be the kind's constructor
    parameters. "auto" takes none: it picks the kind and its defaults.
    """
    name, _, rest = spec.strip().partition(":")
    if name == "auto":
        if rest:
            raise InvalidInputError("index kind 'auto' takes no parameters: name the kind")
        return name, {}
    kind = _kind(name)
    params: dict[str, Any] = {}
    for item in rest.split(",") if rest else []:
        key, eq, value = (part.strip() for part in item.partition("="))
        if not key or not eq or not value:
            raise InvalidInputError(f"index parameter '{item}' is not NAME=VALUE (in '{spec}')")
        params[key] = _number_or_text(value)
    _check_params(kind, params)
    return name, params


def _number_or_text(value: str) -> int | float | str:
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def _check_params(kind: IndexKind, params: dict[str, Any]) -> None:
    accepted = set(inspect.signature(kind.load_class().__init__).parameters) - {"self", "dim"}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise InvalidInputError(
            f"index kind '{kind.name}' takes no parameter {', '.join(unknown)} "
            f"(it takes {', '.join(sorted(accepted))})"
        )


def create_index(
    dim: int,
    kind: str = "auto",
    expected_size: int = 0,
    max_memory_bytes: int | None = None,
    **params,
) -> VectorIndex:
    """An empty index; `params` override the kind's defaults (which depend on expected_size).

    "auto" with no expected_size gives "flat": rebuild with build() once the collection grows.
    """
    if kind == "auto":
        kind = choose_kind(expected_size, dim, max_memory_bytes)
    k = _kind(kind)
    _check_params(k, params)
    return k.load_class()(dim, **{**k.defaults(dim, expected_size), **params})


def build(kind: str, dim: int, ids: IdsLike, vectors: np.ndarray, **params) -> VectorIndex:
    """An index of `kind` holding these vectors (the catalog's stored ones, for a rebuild).

    Sized for len(ids): IVF kinds train on (a sample of) these vectors.
    """
    ids = np.asarray(ids) if not isinstance(ids, np.ndarray) else ids
    index = create_index(dim, kind, expected_size=len(ids), **params)
    index.add(ids, vectors)
    return index


def load_index(path: str | os.PathLike, expect: type[VectorIndex] = VectorIndex) -> VectorIndex:
    """Read an index saved by VectorIndex.save, whatever its kind (or only of class `expect`)."""
    with open_file(path) as (meta, members):
        try:
            index = _kind(meta["kind"]).load_class()._from_file(meta, members)
        except (KeyError, TypeError, ValueError, RuntimeError, MemoryError) as e:
            # faiss raises RuntimeError (or runs out of memory on a garbled size) on bad bytes.
            raise IndexFileError(path, f"corrupt index ({type(e).__name__}: {e})") from e
    if not isinstance(index, expect):
        raise IndexFileError(path, f"holds a '{index.kind}' index, not a {expect.__name__}")
    return index
