"""Milvus as a VectorIndex: milvus-lite for a file URI, a Milvus server or cluster for http(s).

The vectors live in Milvus, not in this process: the saved "file" is a pointer (the URI, the
collection and the index parameters, plus a snapshot of the ids), and saving it flushes Milvus.
Opening an index on a collection that exists takes it as it stands, reading its ids; the
catalog's ids say what is missing (engine/ann.py), so a rebuild or a migration only uploads
the difference and resumes where a killed one stopped.

- Metric: inner product. Consistency level Strong: a search sees every write before it.
- Index types, as the FAISS kinds: flat -> FLAT (exact), hnsw -> HNSW, ivf -> IVF_SQ8,
  ivf-flat -> IVF_FLAT. All four run on milvus-lite 3.2 and on a server. AUTOINDEX is not
  offered: it is approximate, and exact comparisons need FLAT.
- A collection that was released (every reopened one is) is loaded before use.
- milvus-lite turns the URI into a folder holding a LOCK: one process at a time opens it;
  several processes need a Milvus server.
- The token (XMODAL_MILVUS_TOKEN) is never saved; the URI may come from XMODAL_MILVUS_URI.
"""

from __future__ import annotations

import contextlib
import logging
import re
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from xmodal.config import get_settings
from xmodal.errors import InvalidInputError, MissingExtraError, RemoteIndexError
from xmodal.index.base import VectorIndex
from xmodal.index.fileformat import Members

INDEX_TYPES = {"flat": "FLAT", "hnsw": "HNSW", "ivf": "IVF_SQ8", "ivf-flat": "IVF_FLAT"}
# Milvus servers refuse a top-k above this; a larger k is answered from fetched vectors.
MAX_TOPK = 16384
# An `id in [...]` expression longer than this many ids is sent in pieces (server limits).
_FILTER_IDS_PER_EXPR = 50_000
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
_REMOTE_SCHEMES = ("http://", "https://", "tcp://", "grpc://", "unix:")


def is_remote_uri(uri: str) -> bool:
    """Whether uri names a Milvus server (else it is a milvus-lite path)."""
    return uri.startswith(_REMOTE_SCHEMES)


def normalise_uri(uri: str) -> str:
    """A server URI as given; a milvus-lite path made absolute (it is saved and reused)."""
    uri = uri.strip()
    if is_remote_uri(uri):
        return uri
    if not uri.endswith(".db"):
        raise InvalidInputError(
            f"Milvus URI '{uri}' is neither http(s)://HOST:PORT nor a milvus-lite path ending "
            "in .db"
        )
    return str(Path(uri).expanduser().resolve())


def milvus_spec(spec: str | None, uri: str) -> str:
    """An index spec on Milvus at uri: 'milvus' or 'milvus:index=hnsw' (None: 'milvus') with
    uri=URI (made absolute) added; a uri in the spec already is an error."""
    spec = (spec or "milvus").strip()
    name, _, rest = spec.partition(":")
    if name != "milvus":
        raise InvalidInputError(f"a Milvus URI goes with the milvus index kind, not '{name}'")
    if any(item.strip().startswith("uri=") for item in rest.split(",")):
        raise InvalidInputError("give the Milvus URI once: in the spec or as the URI option")
    return f"milvus:{rest + ',' if rest else ''}uri={normalise_uri(uri)}"


def collection_name(base: str) -> str:
    """A valid Milvus collection name from any text (letters, digits, underscores)."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", base)
    return (name if name[:1].isalpha() or name[:1] == "_" else f"x_{name}")[:255]


# Open MilvusIndex objects per milvus-lite path: the embedded server (and the folder's lock)
# is let go when the last one closes.
_lite_users: dict[str, int] = {}


def _pymilvus():
    try:
        import pymilvus
    except ImportError as e:
        raise MissingExtraError("the Milvus index", "milvus", "pymilvus") from e
    return pymilvus


class MilvusIndex(VectorIndex):
    kind = "milvus"

    def __init__(
        self,
        dim: int,
        uri: str | None = None,
        collection: str | None = None,
        index: str = "flat",
        m: int = 32,
        ef_construction: int = 128,
        ef_search: int = 64,
        nlist: int = 128,
        nprobe: int = 16,
        batch_size: int = 1000,
    ):
        super().__init__(dim)
        if index not in INDEX_TYPES:
            raise InvalidInputError(
                f"Milvus index type '{index}' is not one of {', '.join(INDEX_TYPES)}"
            )
        for name, value in [
            ("m", m),
            ("ef_construction", ef_construction),
            ("ef_search", ef_search),
            ("nlist", nlist),
            ("nprobe", nprobe),
            ("batch_size", batch_size),
        ]:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"Milvus parameter {name} must be a positive integer")
        uri = uri or get_settings().milvus_uri
        if not uri:
            raise InvalidInputError(
                "the Milvus index needs a URI: --milvus-uri (a milvus-lite path such as "
                "./vectors.db, or http://HOST:19530), or XMODAL_MILVUS_URI"
            )
        self.uri = normalise_uri(uri)
        self.collection = collection or f"xmodal_{uuid.uuid4().hex[:16]}"
        if not _NAME.fullmatch(self.collection):
            raise InvalidInputError(f"'{self.collection}' is not a valid Milvus collection name")
        self.index_type = index
        self.m, self.ef_construction, self.ef_search = m, ef_construction, ef_search
        self.nlist, self.nprobe, self.batch_size = nlist, nprobe, batch_size
        self._client = self._connect()
        try:
            self._created = self._open()
            self._ids = self._stored_ids()
        except BaseException:
            self.close()  # or milvus-lite's lock stays held by this process
            raise
        self._opened_ids = self._ids

    @property
    def params(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "collection": self.collection,
            "index": self.index_type,
            "m": self.m,
            "ef_construction": self.ef_construction,
            "ef_search": self.ef_search,
            "nlist": self.nlist,
            "nprobe": self.nprobe,
            "batch_size": self.batch_size,
        }

    @property
    def exact(self) -> bool:
        return self.index_type == "flat"

    # -- connection and collection ----------------------------------------------------------

    def _connect(self):
        pymilvus = _pymilvus()
        token = get_settings().milvus_token or ""
        lite = not is_remote_uri(self.uri)
        try:
            if lite:
                Path(self.uri).parent.mkdir(parents=True, exist_ok=True)
            client = pymilvus.MilvusClient(uri=self.uri, token=token)
        except (pymilvus.MilvusException, OSError) as e:
            held = " (is another process using it? one at a time opens a milvus-lite file)"
            raise RemoteIndexError(
                f"cannot open Milvus at {self.uri}{held if lite else ''}: {e}"
            ) from e
        if lite:
            _lite_users[self.uri] = _lite_users.get(self.uri, 0) + 1
        return client

    def _call(self, what: str, fn, *args, **kwargs):
        """A Milvus call whose failure becomes a RemoteIndexError naming what was asked."""
        try:
            return fn(*args, **kwargs)
        except _pymilvus().MilvusException as e:
            raise RemoteIndexError(
                f"Milvus at {self.uri}, collection {self.collection}: {what} failed: {e}"
            ) from e

    def _index_params(self):
        params = self._client.prepare_index_params()
        params.add_index(
            field_name="vector",
            index_type=INDEX_TYPES[self.index_type],
            metric_type="IP",
            params=self._build_params(),
        )
        return params

    def _build_params(self) -> dict[str, int]:
        if self.index_type == "hnsw":
            return {"M": self.m, "efConstruction": self.ef_construction}
        if self.index_type.startswith("ivf"):
            return {"nlist": self.nlist}
        return {}

    def _open(self) -> bool:
        """Create the collection or take the existing one (same dimension), re-indexed if its
        index type differs; loaded. True when it was created."""
        client, name = self._client, self.collection
        if not self._call("has_collection", client.has_collection, name):
            pymilvus = _pymilvus()
            schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("id", pymilvus.DataType.INT64, is_primary=True)
            schema.add_field("vector", pymilvus.DataType.FLOAT_VECTOR, dim=self.dim)
            self._call(
                "create_collection",
                client.create_collection,
                name,
                schema=schema,
                index_params=self._index_params(),
                consistency_level="Strong",
            )
            self._load()
            return True
        fields = self._call("describe_collection", client.describe_collection, name)["fields"]
        dims = [f["params"].get("dim") for f in fields if f["name"] == "vector"]
        if not dims or int(dims[0]) != self.dim:
            raise InvalidInputError(
                f"Milvus collection {name} at {self.uri} holds vectors of dimension "
                f"{dims[0] if dims else '?'}, not {self.dim}"
            )
        info = self._call("describe_index", client.describe_index, name, "vector")
        wanted = INDEX_TYPES[self.index_type]
        # Parameters the server does not report (milvus-lite's IVF nlist) count as the same.
        if info.get("index_type") != wanted or any(
            k in info and str(info[k]) != str(v) for k, v in self._build_params().items()
        ):
            self._call("release_collection", client.release_collection, name)
            self._call("drop_index", client.drop_index, name, "vector")
            self._call("create_index", client.create_index, name, self._index_params())
        self._load()
        return False

    def _loaded(self) -> bool:
        state = self._call("get_load_state", self._client.get_load_state, self.collection)
        return str(state.get("state")).endswith("Loaded")

    def _load(self) -> None:
        # A reopened collection is released: searches fail until it is loaded.
        if not self._loaded():
            self._call("load_collection", self._client.load_collection, self.collection)

    def _stored_ids(self) -> np.ndarray:
        chunks = []
        with _quiet(_ITERATOR_LOGGERS):
            iterator = self._call(
                "query_iterator",
                self._client.query_iterator,
                self.collection,
                batch_size=max(self.batch_size, 1000),
                filter="",
                output_fields=["id"],
            )
            while batch := iterator.next():
                chunks.append(np.fromiter((row["id"] for row in batch), np.int64, len(batch)))
            iterator.close()
        return np.unique(np.concatenate(chunks)) if chunks else np.empty(0, np.int64)

    def close(self) -> None:
        """Let go of the connection; milvus-lite's server and lock go with the last user."""
        if self._client is None:
            return
        self._client.close()
        self._client = None
        if self.uri in _lite_users:
            _lite_users[self.uri] -= 1
            if not _lite_users[self.uri]:
                del _lite_users[self.uri]
                from milvus_lite.server_manager import server_manager_instance

                server_manager_instance.release_server(self.uri)

    def drop(self) -> None:
        """Delete the collection from Milvus (the index is empty afterwards)."""
        self._call("drop_collection", self._client.drop_collection, self.collection)
        self._ids = np.empty(0, np.int64)

    # -- the backend methods ----------------------------------------------------------------

    def _add(self, ids: np.ndarray, vectors: np.ndarray, replaced: np.ndarray) -> None:
        # upsert replaces a present id's row, so `replaced` needs no delete first.
        for start in range(0, len(ids), self.batch_size):
            rows = [
                {"id": int(i), "vector": v}
                for i, v in zip(
                    ids[start : start + self.batch_size],
                    vectors[start : start + self.batch_size],
                )
            ]
            self._call("upsert", self._client.upsert, self.collection, rows)

    def _remove(self, ids: np.ndarray) -> None:
        for start in range(0, len(ids), self.batch_size):
            batch = ids[start : start + self.batch_size].tolist()
            self._call("delete", self._client.delete, self.collection, ids=batch)

    def _search_params(self, k: int) -> dict[str, Any]:
        if self.index_type == "hnsw":
            return {"metric_type": "IP", "params": {"ef": max(self.ef_search, k)}}
        if self.index_type.startswith("ivf"):
            return {"metric_type": "IP", "params": {"nprobe": min(self.nprobe, self.nlist)}}
        return {"metric_type": "IP", "params": {}}

    def _search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        if k > MAX_TOPK:
            return self._search_fetched(queries, k, allowed)
        pieces = (
            [None]
            if allowed is None
            else [
                allowed[s : s + _FILTER_IDS_PER_EXPR]
                for s in range(0, allowed.size, _FILTER_IDS_PER_EXPR)
            ]
        )
        scores = np.full((len(queries), k), -np.inf, np.float32)
        ids = np.full((len(queries), k), -1, np.int64)
        for piece in pieces:
            expr = "" if piece is None else f"id in [{','.join(map(str, piece.tolist()))}]"
            found = self._call(
                "search",
                self._client.search,
                self.collection,
                data=list(queries),
                limit=k,
                filter=expr,
                output_fields=[],
                search_params=self._search_params(k),
            )
            got_s, got_i = _as_arrays(found, k)
            scores, ids = _best_of(scores, ids, got_s, got_i, k)
        return scores, ids

    def _search_exact(self, queries, k, allowed):
        return (
            self._search(queries, k, allowed)
            if self.exact
            else self._search_fetched(queries, k, allowed)
        )

    def _search_fetched(self, queries, k, allowed):
        """Exact scores over every candidate's vector (k above what the server answers)."""
        ids, vectors = self._fetch(self._ids if allowed is None else allowed)
        scores = queries @ vectors.T
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, order, axis=1), ids[order]

    def _fetch(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        got_ids, got_vectors = [], []
        for start in range(0, ids.size, self.batch_size):
            rows = self._call(
                "get",
                self._client.get,
                self.collection,
                ids=ids[start : start + self.batch_size].tolist(),
                output_fields=["vector"],
            )
            got_ids.extend(int(r["id"]) for r in rows)
            got_vectors.extend(r["vector"] for r in rows)
        matrix = np.asarray(got_vectors, np.float32).reshape(len(got_ids), self.dim)
        return np.asarray(got_ids, np.int64), matrix

    def _range_search(
        self, queries: np.ndarray, threshold: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        params = self._search_params(1)
        params["params"] = {**params["params"], "radius": threshold}  # IP: score > radius
        found = self._call(
            "range search",
            self._client.search,
            self.collection,
            data=list(queries),
            limit=min(self.count(), MAX_TOPK),
            filter="",
            output_fields=[],
            search_params=params,
        )
        lims, scores, ids = [0], [], []
        for row in found:
            kept = [h for h in row if h["distance"] > threshold]
            scores.extend(h["distance"] for h in kept)
            ids.extend(h["id"] for h in kept)
            lims.append(len(ids))
        return np.asarray(lims), np.asarray(scores, np.float32), np.asarray(ids, np.int64)

    def _state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        # Saving = making Milvus durable; the pointer file itself is written by save().
        self._call("flush", self._client.flush, self.collection)
        return {}, {}

    def _restore(self, meta: dict[str, Any], members: Members) -> None:
        if self._created:
            # The saved pointer names a collection that is gone: not an index to trust.
            self.drop()
            raise ValueError(f"Milvus collection {self.collection} at {self.uri} is gone")
        self._ids = self._opened_ids  # Milvus, not the snapshot in the file, holds the truth


# milvus-lite lacks the timestamp call that the query iterator tries first: it logs an error
# with a traceback, then goes on correctly with the client's clock. Those lines are noise.
_ITERATOR_LOGGERS = ("grpc._server", "pymilvus.client.iterator.query_iterator")


@contextlib.contextmanager
def _quiet(names):
    loggers = [logging.getLogger(name) for name in names]
    before = [logger.disabled for logger in loggers]
    for logger in loggers:
        logger.disabled = True
    try:
        yield
    finally:
        for logger, was in zip(loggers, before):
            logger.disabled = was


def _as_arrays(found, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = np.full((len(found), k), -np.inf, np.float32)
    ids = np.full((len(found), k), -1, np.int64)
    for q, row in enumerate(found):
        for j, hit in enumerate(row[:k]):
            scores[q, j], ids[q, j] = hit["distance"], hit["id"]
    return scores, ids


def _best_of(scores_a, ids_a, scores_b, ids_b, k: int):
    """Per row, the k best of two FAISS-style result sets (an allow-list sent in pieces)."""
    scores = np.concatenate([scores_a, scores_b], axis=1)
    ids = np.concatenate([ids_a, ids_b], axis=1)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(ids, order, axis=1)
