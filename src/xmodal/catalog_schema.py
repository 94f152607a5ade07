"""The catalog's schema, versioned with `PRAGMA user_version`: MIGRATIONS[i] takes a database
from version i to i + 1 in one transaction. Append new migrations; never edit a released one.
"""

from __future__ import annotations

import sqlite3

from xmodal import fulltext
from xmodal.errors import CatalogError

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
    # 4: text items beside images; the text that belongs to each item, full-text searchable by
    # words (BM25) and by any 3+ character substring (trigram: half a licence plate matches);
    # moderation verdicts. The sidecar caption moves from files into texts.
    f"""
    ALTER TABLE files ADD COLUMN kind TEXT NOT NULL DEFAULT 'image';
    CREATE INDEX files_by_kind ON files (kind);
    CREATE TABLE texts (
        id INTEGER PRIMARY KEY REFERENCES files (id) ON DELETE CASCADE,
        caption TEXT NOT NULL DEFAULT '',
        embedded TEXT NOT NULL DEFAULT '',
        filename TEXT NOT NULL DEFAULT '',
        ocr TEXT NOT NULL DEFAULT '',
        body TEXT NOT NULL DEFAULT '',
        -- The sidecar files' sizes and mtimes when the caption was read: an edited sidecar is
        -- read again without re-embedding its image.
        caption_stamp TEXT NOT NULL DEFAULT '',
        ocr_done INTEGER NOT NULL DEFAULT 0
    );
    {fulltext.SCHEMA}
    INSERT INTO texts (id, caption) SELECT id, coalesce(caption, '') FROM files;
    ALTER TABLE files DROP COLUMN caption;
    CREATE TABLE verdicts (
        id INTEGER PRIMARY KEY REFERENCES files (id) ON DELETE CASCADE,
        policy TEXT NOT NULL,  -- the fingerprint of the category file and model that judged
        flagged TEXT NOT NULL,  -- JSON list of flagged categories; '[]' is safe
        scores TEXT NOT NULL  -- JSON object: category -> score
    );
    CREATE INDEX verdicts_by_flagged ON verdicts (flagged);
    """,
    # 5: sounds and videos. A video is a file row (its state, no vector) whose segments are
    # rows of their own (parent = the video, path = the video's path + NUL + start, which no
    # real path can be), each with a vector and a time range. What a sound says is its text
    # body; the timed speech segments and the speech share are kept beside it.
    """
    ALTER TABLE files ADD COLUMN duration REAL;
    ALTER TABLE files ADD COLUMN parent INTEGER REFERENCES files (id) ON DELETE CASCADE;
    ALTER TABLE files ADD COLUMN start_s REAL;
    ALTER TABLE files ADD COLUMN end_s REAL;
    CREATE INDEX files_by_parent ON files (parent);
    CREATE TABLE speech (
        id INTEGER PRIMARY KEY REFERENCES files (id) ON DELETE CASCADE,
        share REAL NOT NULL,  -- of the clip's length that is speech
        segments TEXT NOT NULL  -- JSON [[start, end, text], ...] in seconds
    );
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


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
        if version + 1 == _TEXTS_VERSION:
            _fill_filenames(db)


# The migration that added full-text search: the words of existing files' names are filled in
# after it, in Python (SQL cannot split a bytes path into words).
_TEXTS_VERSION = 4


def _fill_filenames(db: sqlite3.Connection) -> None:
    from xmodal.itemtext import filename_words

    rows = db.execute("SELECT id, path FROM files").fetchall()
    db.execute("BEGIN IMMEDIATE")
    db.executemany(
        "UPDATE texts SET filename = ? WHERE id = ? AND filename = ''",
        [(filename_words(path), item_id) for item_id, path in rows],
    )
    db.execute("COMMIT")
