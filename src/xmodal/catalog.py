"""The catalog: one SQLite file that is the truth about which files are indexed and their vectors.

Paths are stored as bytes (os.fsencode), so names that are not valid UTF-8 round-trip. Vectors are
float32 BLOBs: the ANN index is rebuilt from them bit for bit, so a rebuilt index answers exactly
as the one it replaces (float16 would halve ~1.5 KB per 384-d image but shift scores by ~1e-3,
enough to reorder near ties and move items across a near-duplicate threshold).

The schema is versioned with `PRAGMA user_version`; MIGRATIONS[i] takes a database from version i
to i + 1 in one transaction. Append new migrations; never edit a released one.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xmodal.errors import CatalogError
from xmodal.filters import Filter, parse_filter

MIGRATIONS: list[str] = [
    # 1: what an indexed file needs.
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    INSERT INTO meta (key, value) VALUES ('generation', '0');
    CREATE TABLE roots (path BLOB PRIMARY KEY);
    CREATE TABLE files (
        -- AUTOINCREMENT: an id is never reused, so an id in a stale ANN index can never point
        -- at another file's row.
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        path BLOB NOT NULL UNIQUE,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        hash BLOB NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL
    );
    CREATE INDEX files_by_hash ON files (hash);
    -- Apart from files, so listing files never reads vector pages.
    CREATE TABLE vectors (
        id INTEGER PRIMARY KEY REFERENCES files (id) ON DELETE CASCADE,
        vector BLOB NOT NULL
    );
    """,
    # 2: sidecar captions, user metadata, and bad files remembered so they are not retried.
    """
    ALTER TABLE files ADD COLUMN caption TEXT;
    ALTER TABLE files ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}';
    CREATE TABLE skipped (
        path BLOB PRIMARY KEY,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        reason TEXT NOT NULL
    );
    """,
    # 3: range filters on the built-in fields answer from an index, not a scan (path prefixes
    # already have the UNIQUE index).
    """
    CREATE INDEX files_by_size ON files (size);
    CREATE INDEX files_by_width ON files (width);
    CREATE INDEX files_by_height ON files (height);
    CREATE INDEX files_by_mtime ON files (mtime_ns);
    """,
]
# Allowed-id sets kept per filter until the catalog changes (metadata keys have no index, so a
# repeated filtered query would otherwise rescan every row's JSON).
_FILTER_CACHE_ENTRIES = 32
_FILTER_CACHE_IDS = 4_000_000  # 32 MB of int64 ids at most, whatever the collection's size
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass(frozen=True)
class Item:
    """One indexed image as the Python API, CLI and server show it."""

    id: int
    path: str  # os.fsdecode of the stored bytes: opens the file even when not valid UTF-8
    size: int
    mtime: float  # seconds since the epoch
    width: int
    height: int
    caption: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FileRow:
    """What the indexer writes for one file (its vector goes beside it)."""

    path: bytes
    size: int
    mtime_ns: int
    hash: bytes
    width: int
    height: int
    caption: str | None = None


@dataclass(frozen=True)
class FileState:
    id: int
    size: int
    mtime_ns: int
    hash: bytes


@dataclass(frozen=True)
class SkipState:
    size: int
    mtime_ns: int
    reason: str


class Catalog:
    """SQLite in WAL mode. Writes go inside `transaction()`; each one that adds or deletes
    vectors bumps `generation`, which the saved ANN index is compared against (moves, touches,
    roots and skips leave the ANN index as it is). Other processes may write the same file:
    `data_version()` tells cheaply that one did, `reading()` gives a consistent snapshot.
    Writers of a collection take its file lock first (engine/lock.py), so the catalog has
    one writer at a time.

    One connection; usable from any thread, but from one thread at a time.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            # isolation_level=None: no implicit transactions, BEGIN/COMMIT are ours.
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA busy_timeout = 10000")
            self._db.execute("PRAGMA journal_mode = WAL")
            # NORMAL in WAL mode: a killed process loses nothing committed; a power cut may lose
            # the last transactions but never corrupts the file.
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.execute("PRAGMA foreign_keys = ON")
            migrate(self._db)
        except sqlite3.DatabaseError as e:
            raise CatalogError(f"{self.path}: cannot open the catalog ({e})") from e
        self._in_transaction = False
        self._changed = False
        self._reading = 0
        self._commits = 0  # this connection's own commits (data_version counts the others')
        self._filter_cache: dict[Filter, np.ndarray] = {}
        self._filter_cache_version: tuple[int, int] | None = None

    def close(self) -> None:
        self._db.close()

    # -- transactions and meta ----------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._in_transaction or self._reading:
            raise CatalogError("catalog transactions do not nest")
        self._db.execute("BEGIN IMMEDIATE")
        self._in_transaction, self._changed = True, False
        try:
            yield
            if self._changed:
                self._db.execute(
                    "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'"
                )
            self._db.execute("COMMIT")
            self._commits += 1
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        finally:
            self._in_transaction = False

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Reads in the block see one snapshot, whatever other processes commit meanwhile
        (WAL: a read transaction never blocks writers). Nests; not inside transaction()."""
        if self._in_transaction:
            yield
            return
        if self._reading == 0:
            self._db.execute("BEGIN DEFERRED")
            self._db.execute("SELECT 1 FROM meta LIMIT 1")  # the snapshot starts at a read
        self._reading += 1
        try:
            yield
        finally:
            self._reading -= 1
            if self._reading == 0:
                self._db.execute("COMMIT")

    def data_version(self) -> int:
        """Changes whenever another connection commits to the file (not on this one's own
        commits): a check cheap enough for every query."""
        return self._db.execute("PRAGMA data_version").fetchone()[0]

    def _write(
        self,
        sql: str,
        args: Sequence[Any] | Iterable[Sequence[Any]] = (),
        *,
        many: bool = False,
        vectors_change: bool = False,
    ):
        if not self._in_transaction:
            raise CatalogError("catalog writes must run inside transaction()")
        self._changed |= vectors_change
        return self._db.executemany(sql, args) if many else self._db.execute(sql, args)

    def meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str, *, only_if_missing: bool = False) -> None:
        """Set a meta value in its own transaction (not a data change: generation stays)."""
        verb = "INSERT OR IGNORE" if only_if_missing else "INSERT OR REPLACE"
        self._db.execute(f"{verb} INTO meta (key, value) VALUES (?, ?)", (key, value))

    @property
    def generation(self) -> int:
        return int(self.meta("generation") or 0)

    # -- roots --------------------------------------------------------------------------------

    def roots(self) -> list[bytes]:
        return [r for (r,) in self._db.execute("SELECT path FROM roots ORDER BY path")]

    def add_roots(self, roots: Iterable[bytes]) -> None:
        self._write(
            "INSERT OR IGNORE INTO roots (path) VALUES (?)", [(r,) for r in roots], many=True
        )

    # -- what the indexer compares a scan against: one query each -----------------------------

    def file_states(self) -> dict[bytes, FileState]:
        rows = self._db.execute("SELECT path, id, size, mtime_ns, hash FROM files")
        return {path: FileState(*rest) for path, *rest in rows}

    def file_state(self, path: bytes) -> FileState | None:
        row = self._db.execute(
            "SELECT id, size, mtime_ns, hash FROM files WHERE path = ?", (path,)
        ).fetchone()
        return None if row is None else FileState(*row)

    def id_with_hash(self, digest: bytes) -> int | None:
        """An indexed file holding exactly these bytes (its vector can be shared)."""
        row = self._db.execute("SELECT id FROM files WHERE hash = ? LIMIT 1", (digest,))
        found = row.fetchone()
        return None if found is None else found[0]

    def skip_states(self) -> dict[bytes, SkipState]:
        rows = self._db.execute("SELECT path, size, mtime_ns, reason FROM skipped")
        return {path: SkipState(*rest) for path, *rest in rows}

    # -- files and vectors ----------------------------------------------------------------------

    def insert_file(self, row: FileRow, vector: np.ndarray) -> int:
        item_id = self._insert_row(row)
        blob = np.ascontiguousarray(vector, dtype=np.float32).tobytes()
        self._write(
            "INSERT INTO vectors (id, vector) VALUES (?, ?)", (item_id, blob), vectors_change=True
        )
        return item_id

    def insert_copy(self, row: FileRow, source_id: int) -> int:
        """A new file whose bytes equal an indexed one's: it shares that file's vector."""
        item_id = self._insert_row(row)
        self._write(
            "INSERT INTO vectors (id, vector) SELECT ?, vector FROM vectors WHERE id = ?",
            (item_id, source_id),
            vectors_change=True,
        )
        return item_id

    def _insert_row(self, row: FileRow) -> int:
        self._write("DELETE FROM skipped WHERE path = ?", (row.path,))
        cursor = self._write(
            "INSERT INTO files (path, size, mtime_ns, hash, width, height, caption)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (row.path, row.size, row.mtime_ns, row.hash, row.width, row.height, row.caption),
        )
        return int(cursor.lastrowid)

    def move_file(self, item_id: int, path: bytes, size: int, mtime_ns: int) -> None:
        self._write("DELETE FROM skipped WHERE path = ?", (path,))
        self._write(
            "UPDATE files SET path = ?, size = ?, mtime_ns = ? WHERE id = ?",
            (path, size, mtime_ns, item_id),
        )

    def touch_file(self, item_id: int, size: int, mtime_ns: int) -> None:
        """Same bytes, new mtime (a `touch`, a copy over itself): remember it, keep the rest."""
        self._write(
            "UPDATE files SET size = ?, mtime_ns = ? WHERE id = ?", (size, mtime_ns, item_id)
        )

    def delete_files(self, ids: Iterable[int]) -> int:
        """Delete files and (by cascade) their vectors; returns how many existed."""
        cursor = self._write(
            "DELETE FROM files WHERE id = ?",
            [(int(i),) for i in ids],
            many=True,
            vectors_change=True,
        )
        return max(cursor.rowcount, 0)

    def set_metadata(self, item_id: int, metadata: dict[str, Any]) -> bool:
        cursor = self._write(
            "UPDATE files SET metadata = ? WHERE id = ?", (json.dumps(metadata), item_id)
        )
        return cursor.rowcount > 0

    def ids_where(self, where: Filter | dict[str, Any]) -> np.ndarray:
        """Ids of the items matching `where` (see xmodal.filters), sorted; cached until any
        connection commits to the catalog. Treat the array as read-only."""
        query = parse_filter(where)
        version = (self.data_version(), self._commits)
        if version != self._filter_cache_version:
            self._filter_cache, self._filter_cache_version = {}, version
        # Inside a transaction the rows may still change or roll back: no cache either way.
        found = None if self._in_transaction else self._filter_cache.get(query)
        if found is None:
            clause, args = query.sql() if query is not None else ("1", [])
            rows = self._db.execute(f"SELECT id FROM files WHERE {clause} ORDER BY id", args)
            found = np.array([r[0] for r in rows], dtype=np.int64)
            found.flags.writeable = False
            cache = self._filter_cache
            while cache and (
                len(cache) >= _FILTER_CACHE_ENTRIES
                or sum(a.size for a in cache.values()) + found.size > _FILTER_CACHE_IDS
            ):
                cache.pop(next(iter(cache)))  # the oldest first
            if found.size <= _FILTER_CACHE_IDS and not self._in_transaction:
                cache[query] = found
        return found

    # -- skipped files ----------------------------------------------------------------------

    def record_skip(self, path: bytes, size: int, mtime_ns: int, reason: str) -> None:
        self._write(
            "INSERT OR REPLACE INTO skipped (path, size, mtime_ns, reason) VALUES (?, ?, ?, ?)",
            (path, size, mtime_ns, reason),
        )

    def forget_skips(self, paths: Iterable[bytes]) -> None:
        self._write("DELETE FROM skipped WHERE path = ?", [(p,) for p in paths], many=True)

    # -- reads ------------------------------------------------------------------------------

    def count(self) -> int:
        return self._db.execute("SELECT count(*) FROM files").fetchone()[0]

    def ids(self) -> np.ndarray:
        rows = self._db.execute("SELECT id FROM vectors ORDER BY id").fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def vectors(self, ids: Iterable[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64 [n], float32 [n, dim]) of the given ids that exist, or of all; by id."""
        if ids is None:
            rows = self._db.execute("SELECT id, vector FROM vectors ORDER BY id").fetchall()
        else:
            rows = self._select_in("SELECT id, vector FROM vectors WHERE id IN", ids)
            rows.sort()
        found = np.array([r[0] for r in rows], dtype=np.int64)
        if not rows:
            return found, np.zeros((0, int(self.meta("dim") or 0)), np.float32)
        matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32)
        return found, matrix.reshape(len(rows), -1)

    def paths(self, ids: Iterable[int]) -> dict[int, bytes]:
        return dict(self._select_in("SELECT id, path FROM files WHERE id IN", ids))

    def sizes(self) -> dict[int, tuple[int, int]]:
        """id -> (pixels, bytes) of every file: which copy of a duplicate to keep."""
        rows = self._db.execute("SELECT id, width * height, size FROM files")
        return {item_id: (pixels, size) for item_id, pixels, size in rows}

    def dimensions(self, item_id: int) -> tuple[int, int]:
        row = self._db.execute("SELECT width, height FROM files WHERE id = ?", (item_id,))
        return tuple(row.fetchone())

    def item(self, item_id: int) -> Item | None:
        return self._item_where("id = ?", item_id)

    def item_at(self, path: bytes) -> Item | None:
        return self._item_where("path = ?", path)

    def _item_where(self, condition: str, value: Any) -> Item | None:
        row = self._db.execute(
            "SELECT id, path, size, mtime_ns, width, height, caption, metadata FROM files"
            f" WHERE {condition}",
            (value,),
        ).fetchone()
        if row is None:
            return None
        item_id, path, size, mtime_ns, width, height, caption, metadata = row
        return Item(
            item_id,
            os.fsdecode(path),
            size,
            mtime_ns / 1e9,
            width,
            height,
            caption,
            json.loads(metadata),
        )

    def _select_in(self, sql: str, ids: Iterable[int]) -> list[tuple]:
        ids = [int(i) for i in ids]
        rows: list[tuple] = []
        # SQLite caps bound parameters per statement (32766 since 3.32).
        for start in range(0, len(ids), 30_000):
            chunk = ids[start : start + 30_000]
            marks = ",".join("?" * len(chunk))
            rows.extend(self._db.execute(f"{sql} ({marks})", chunk).fetchall())
        return rows


def migrate(db: sqlite3.Connection) -> None:
    """Bring a database to SCHEMA_VERSION, one migration per transaction."""
    while True:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise CatalogError(
                f"catalog schema version {version} is newer than this xmodal understands "
                f"({SCHEMA_VERSION}): upgrade xmodal"
            )
        if version == SCHEMA_VERSION:
            return
        script = MIGRATIONS[version]
        try:
            # executescript commits any open transaction first, so BEGIN/COMMIT go inside it.
            db.executescript(
                f"BEGIN IMMEDIATE; {script}; PRAGMA user_version = {version + 1}; COMMIT;"
            )
        except sqlite3.OperationalError:
            if db.in_transaction:
                db.execute("ROLLBACK")
            # Another process may have applied this migration while we waited for the lock.
            if db.execute("PRAGMA user_version").fetchone()[0] == version:
                raise
