"""The catalog: one SQLite file that is the truth about which files are indexed and their vectors.

Paths are stored as bytes (os.fsencode), so names that are not valid UTF-8 round-trip. Vectors are
float32 BLOBs: the ANN index is rebuilt from them bit for bit, so a rebuilt index answers exactly
as the one it replaces (float16 would halve ~1.5 KB per 384-d image but shift scores by ~1e-3,
enough to reorder near ties and move items across a near-duplicate threshold).
The schema and its migrations are in catalog_schema.py.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from xmodal import fulltext
from xmodal.catalog_rows import (
    AUDIO_KIND,
    IMAGE_KIND,
    TEXT_KIND,
    VIDEO_KIND,
    FileRow,
    FileState,
    Item,
    SkipState,
    file_path,
    segment_path,
)
from xmodal.catalog_schema import MIGRATIONS, SCHEMA_VERSION, migrate
from xmodal.errors import CatalogError
from xmodal.filters import Filter, parse_filter
from xmodal.itemtext import ItemText, filename_words

__all__ = [
    "AUDIO_KIND",
    "IMAGE_KIND",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "TEXT_KIND",
    "VIDEO_KIND",
    "Catalog",
    "FileRow",
    "FileState",
    "Item",
    "SkipState",
    "file_path",
    "migrate",
    "segment_path",
]

# Allowed-id sets kept per filter until the catalog changes (metadata keys have no index, so a
# repeated filtered query would otherwise rescan every row's JSON).
_FILTER_CACHE_ENTRIES = 32
_FILTER_CACHE_IDS = 4_000_000  # 32 MB of int64 ids at most, whatever the collection's size


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
        self._filter_cache: dict[tuple[Filter | None, bool], np.ndarray] = {}
        self._filter_cache_version: tuple[int, int] | None = None
        self._remembers: dict[str, tuple[tuple[int, int], bool]] = {}

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
        rows = self._db.execute(
            "SELECT path, id, size, mtime_ns, hash FROM files WHERE parent IS NULL"
        )
        return {path: FileState(*rest) for path, *rest in rows}

    def file_state(self, path: bytes) -> FileState | None:
        row = self._db.execute(
            "SELECT id, size, mtime_ns, hash FROM files WHERE path = ?", (path,)
        ).fetchone()
        return None if row is None else FileState(*row)

    def id_with_hash(self, digest: bytes) -> int | None:
        """An indexed file holding exactly these bytes (its vector can be shared)."""
        row = self._db.execute(
            "SELECT id FROM files WHERE hash = ? AND parent IS NULL LIMIT 1", (digest,)
        )
        found = row.fetchone()
        return None if found is None else found[0]

    def skip_states(self) -> dict[bytes, SkipState]:
        rows = self._db.execute("SELECT path, size, mtime_ns, reason FROM skipped")
        return {path: SkipState(*rest) for path, *rest in rows}

    # -- files and vectors ----------------------------------------------------------------------

    def insert_file(self, row: FileRow, vector: np.ndarray | None) -> int:
        """A new row and its vector (None: a video's own row, whose segments have them)."""
        item_id = self._insert_row(row)
        if vector is None:
            return item_id
        blob = np.ascontiguousarray(vector, dtype=np.float32).tobytes()
        self._write(
            "INSERT INTO vectors (id, vector) VALUES (?, ?)", (item_id, blob), vectors_change=True
        )
        return item_id

    def insert_copy(self, row: FileRow, source_id: int) -> int:
        """A new file whose bytes equal an indexed one's: it shares that file's vector and the
        words printed on it."""
        item_id = self._insert_row(row)
        self._write(
            "INSERT INTO vectors (id, vector) SELECT ?, vector FROM vectors WHERE id = ?",
            (item_id, source_id),
            vectors_change=True,
        )
        self._write(
            "UPDATE texts SET (ocr, ocr_done, body) ="
            " (SELECT ocr, ocr_done, body FROM texts WHERE id = ?) WHERE id = ?",
            (source_id, item_id),
        )
        self._write(
            "INSERT INTO speech (id, share, segments) SELECT ?, share, segments FROM speech"
            " WHERE id = ?",
            (item_id, source_id),
        )
        return item_id

    def set_speech(self, item_id: int, share: float, segments: Sequence) -> None:
        """What was said in a sound: the share of it that is speech and the timed segments
        ((start, end, text) in seconds); the words themselves are its text body."""
        self._write(
            "INSERT OR REPLACE INTO speech (id, share, segments) VALUES (?, ?, ?)",
            (item_id, float(share), json.dumps([list(s) for s in segments])),
        )

    def speech(self, item_id: int) -> tuple[float, list[tuple[float, float, str]]] | None:
        row = self._db.execute(
            "SELECT share, segments FROM speech WHERE id = ?", (item_id,)
        ).fetchone()
        if row is None:
            return None
        return row[0], [tuple(s) for s in json.loads(row[1])]

    def children(self, ids: Iterable[int]) -> list[int]:
        """The segments of these videos."""
        return [r[0] for r in self._select_in("SELECT id FROM files WHERE parent IN", ids)]

    def spans(self, ids: Iterable[int]) -> dict[int, tuple[float, float]]:
        """id -> (start, end) of the video segments among `ids`."""
        rows = self._select_in(
            "SELECT id, start_s, end_s FROM files WHERE parent IS NOT NULL AND id IN", ids
        )
        return {i: (start, end) for i, start, end in rows}

    def has_segments(self) -> bool:
        return self._remembered(
            "has_segments", "SELECT 1 FROM files WHERE parent IS NOT NULL LIMIT 1"
        )

    def _insert_row(self, row: FileRow) -> int:
        self._write("DELETE FROM skipped WHERE path = ?", (row.path,))
        cursor = self._write(
            "INSERT INTO files (path, size, mtime_ns, hash, width, height, kind, duration,"
            " parent, start_s, end_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.path,
                row.size,
                row.mtime_ns,
                row.hash,
                row.width,
                row.height,
                row.kind,
                row.duration,
                row.parent,
                row.start,
                row.end,
            ),
        )
        item_id = int(cursor.lastrowid)
        self._write(
            "INSERT INTO texts (id, caption, embedded, filename, body, caption_stamp)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                item_id,
                row.caption or "",
                row.embedded,
                filename_words(file_path(row.path)),
                row.body,
                row.caption_stamp,
            ),
        )
        return item_id

    def move_file(
        self,
        item_id: int,
        path: bytes,
        size: int,
        mtime_ns: int,
        caption: str | None = None,
        caption_stamp: str = "",
    ) -> None:
        """A file moved or renamed: same bytes and vector; its name and sidecars are new."""
        self._write("DELETE FROM skipped WHERE path = ?", (path,))
        self._write(
            "UPDATE files SET path = ?, size = ?, mtime_ns = ? WHERE id = ?",
            (path, size, mtime_ns, item_id),
        )
        # A video's segments follow it: their paths are its path + NUL + start.
        moved = self._db.execute("SELECT id, path FROM files WHERE parent = ?", (item_id,))
        self._write(
            "UPDATE files SET path = ? WHERE id = ?",
            [(path + old[len(file_path(old)) :], i) for i, old in moved.fetchall()],
            many=True,
        )
        self._write(
            "UPDATE texts SET filename = ? WHERE id IN (SELECT id FROM files WHERE parent = ?)",
            (filename_words(path), item_id),
        )
        self._write(
            "UPDATE texts SET filename = ?, caption = ?, caption_stamp = ? WHERE id = ?",
            (filename_words(path), caption or "", caption_stamp, item_id),
        )

    def set_caption(self, item_id: int, caption: str | None, caption_stamp: str) -> None:
        """A sidecar edited, added or removed beside an unchanged file."""
        self._write(
            "UPDATE texts SET caption = ?, caption_stamp = ? WHERE id = ?",
            (caption or "", caption_stamp, item_id),
        )

    def caption_stamps(self) -> dict[int, str]:
        return dict(self._db.execute("SELECT id, caption_stamp FROM texts"))

    # -- text: OCR, full-text search -----------------------------------------------------------

    def set_ocr(self, results: Iterable[tuple[int, str]]) -> None:
        """Words read from images (empty: read, none found); every copy of the bytes too."""
        self._write(
            "UPDATE texts SET ocr = ?2, ocr_done = 1 WHERE id IN (SELECT id FROM files WHERE"
            " hash = (SELECT hash FROM files WHERE id = ?1))",
            [(int(i), text) for i, text in results],
            many=True,
        )

    def ids_without_ocr(self) -> list[int]:
        """Images not yet read for printed words, one per distinct content."""
        rows = self._db.execute(
            "SELECT min(f.id) FROM files f JOIN texts t ON t.id = f.id"
            " WHERE f.kind = ? AND t.ocr_done = 0 GROUP BY f.hash ORDER BY 1",
            (IMAGE_KIND,),
        )
        return [r[0] for r in rows]

    def texts(self, ids: Iterable[int]) -> dict[int, ItemText]:
        cols = ", ".join(fulltext.COLUMNS)
        rows = self._select_in(f"SELECT id, {cols} FROM texts WHERE id IN", ids)
        return {r[0]: ItemText(*r[1:]) for r in rows}

    def has_text(self) -> bool:
        """Whether any item has text beyond its file name (hybrid search is worth running).
        Remembered until the catalog changes: in a collection without text it is a full scan."""
        return self._remembered(
            "has_text",
            "SELECT 1 FROM texts WHERE caption != '' OR embedded != '' OR ocr != ''"
            " OR body != '' LIMIT 1",
        )

    def any_flagged(self) -> bool:
        """Whether a stored moderation verdict flagged any item (remembered like has_text)."""
        return self._remembered(
            "any_flagged", "SELECT 1 FROM verdicts WHERE flagged != '[]' LIMIT 1"
        )

    def _remembered(self, name: str, sql: str) -> bool:
        version = (self.data_version(), self._commits)
        known = self._remembers.get(name)
        if known is None or known[0] != version or self._in_transaction:
            known = (version, self._db.execute(sql).fetchone() is not None)
            self._remembers[name] = known
        return known[1]

    def match_text(
        self, query: str, limit: int, where: Filter | None = None, include_flagged: bool = True
    ) -> list[tuple[int, float]]:
        """(id, score) of items whose text matches `query`, best first (xmodal.fulltext)."""
        parts, args = [], []
        if where is not None:
            clause, more = where.sql()
            parts.append(f"rowid IN (SELECT id FROM files WHERE {clause})")
            args += more
        if not include_flagged:
            parts.append("rowid NOT IN (SELECT id FROM verdicts WHERE flagged != '[]')")
        try:
            return fulltext.match(self._db, query, limit, " AND ".join(parts), tuple(args))
        except sqlite3.OperationalError as e:
            raise CatalogError(f"{self.path}: full-text search failed ({e})") from e

    # -- moderation verdicts ------------------------------------------------------------------

    def set_verdicts(self, verdicts: Iterable[tuple[int, str, list[str], dict[str, float]]]):
        """(id, policy fingerprint, flagged categories, scores) per item."""
        self._write(
            "INSERT OR REPLACE INTO verdicts (id, policy, flagged, scores) VALUES (?, ?, ?, ?)",
            [(int(i), p, json.dumps(f), json.dumps(s)) for i, p, f, s in verdicts],
            many=True,
        )

    def ids_without_verdict(self, policy: str) -> list[int]:
        """Images never judged, or judged under another policy or model."""
        rows = self._db.execute(
            "SELECT f.id FROM files f LEFT JOIN verdicts v ON v.id = f.id"
            " WHERE f.kind = ? AND (v.id IS NULL OR v.policy != ?) ORDER BY f.id",
            (IMAGE_KIND, policy),
        )
        return [r[0] for r in rows]

    def verdict(self, item_id: int) -> tuple[list[str], dict[str, float]] | None:
        row = self._db.execute(
            "SELECT flagged, scores FROM verdicts WHERE id = ?", (item_id,)
        ).fetchone()
        return None if row is None else (json.loads(row[0]), json.loads(row[1]))

    def touch_file(self, item_id: int, size: int, mtime_ns: int) -> None:
        """Same bytes, new mtime (a `touch`, a copy over itself): remember it, keep the rest."""
        self._write(
            "UPDATE files SET size = ?, mtime_ns = ? WHERE id = ?", (size, mtime_ns, item_id)
        )

    def delete_files(self, ids: Iterable[int]) -> int:
        """Delete files and (by cascade) their vectors and a video's segments; returns how many
        existed (segments not counted)."""
        ids = [int(i) for i in ids]
        self._write(
            "DELETE FROM files WHERE parent = ?",
            [(i,) for i in ids],
            many=True,
            vectors_change=True,
        )
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

    def ids_where(self, where: Filter | dict[str, Any] | None, *, unflagged: bool = False):
        """Ids of the items matching `where` (see xmodal.filters; and, with unflagged, that no
        stored verdict flagged), sorted; cached until any connection commits to the catalog.
        Treat the array as read-only."""
        query = parse_filter(where)
        key = (query, unflagged)
        version = (self.data_version(), self._commits)
        if version != self._filter_cache_version:
            self._filter_cache, self._filter_cache_version = {}, version
        # Inside a transaction the rows may still change or roll back: no cache either way.
        found = None if self._in_transaction else self._filter_cache.get(key)
        if found is None:
            clause, args = query.sql() if query is not None else ("1", [])
            if unflagged:
                clause += " AND id NOT IN (SELECT id FROM verdicts WHERE flagged != '[]')"
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
                cache[key] = found
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
        """id -> the file's path (a video segment's: its video's)."""
        rows = self._select_in("SELECT id, path FROM files WHERE id IN", ids)
        return {i: file_path(p) for i, p in rows}

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
            "SELECT f.id, path, size, mtime_ns, width, height, t.caption, metadata, kind,"
            " duration, start_s, end_s"
            f" FROM files f LEFT JOIN texts t ON t.id = f.id WHERE f.{condition}",
            (value,),
        ).fetchone()
        if row is None:
            return None
        item_id, path, size, mtime_ns, width, height, caption, metadata, kind, *timing = row
        return Item(
            item_id,
            os.fsdecode(file_path(path)),
            size,
            mtime_ns / 1e9,
            width,
            height,
            caption or None,
            json.loads(metadata),
            kind,
            *timing,
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
