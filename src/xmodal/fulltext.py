"""Full-text search over the text that belongs to items (captions, embedded descriptions, file
names, OCR, text bodies), in SQLite FTS5.

Two indexes over the same `texts` rows, kept in step by triggers:
- `texts_words`: words, ranked by BM25. Its tokenizer keeps combining marks inside words (FTS5's
  default splits Devanagari words at every vowel sign) and folds accents, so "cafe" finds "café".
- `texts_trigram`: any run of 3+ characters, so part of a token (the first half of a licence
  plate, the middle of a compound word) still matches.
A query runs on both; the two rankings are fused by reciprocal rank.
"""

from __future__ import annotations

import sqlite3
import unicodedata

COLUMNS = ("caption", "embedded", "filename", "ocr", "body")
# BM25 weights per column, in COLUMNS order: what a person wrote about an item counts most.
_WEIGHTS = (3.0, 2.0, 1.0, 2.0, 1.0)
_RRF_K = 60
# Query terms beyond these are dropped: FTS5 cost grows with terms and a paragraph is not a query.
_MAX_TERMS = 32
_MIN_TRIGRAM = 3


def _fts(name: str, tokenizer: str) -> str:
    cols = ", ".join(COLUMNS)
    new = ", ".join(f"new.{c}" for c in COLUMNS)
    old = ", ".join(f"old.{c}" for c in COLUMNS)
    return f"""
    CREATE VIRTUAL TABLE {name} USING fts5(
        {cols}, content='texts', content_rowid='id', tokenize="{tokenizer}"
    );
    CREATE TRIGGER {name}_insert AFTER INSERT ON texts BEGIN
        INSERT INTO {name} (rowid, {cols}) VALUES (new.id, {new});
    END;
    CREATE TRIGGER {name}_delete AFTER DELETE ON texts BEGIN
        INSERT INTO {name} ({name}, rowid, {cols}) VALUES ('delete', old.id, {old});
    END;
    CREATE TRIGGER {name}_update AFTER UPDATE OF {cols} ON texts BEGIN
        INSERT INTO {name} ({name}, rowid, {cols}) VALUES ('delete', old.id, {old});
        INSERT INTO {name} (rowid, {cols}) VALUES (new.id, {new});
    END;
    """


SCHEMA = _fts("texts_words", "unicode61 remove_diacritics 2 categories 'L* N* Co M*'") + _fts(
    "texts_trigram", "trigram"
)


def words(text: str) -> list[str]:
    """Letters, digits and combining marks in runs, as the words index tokenizes them."""
    out, current = [], []
    for ch in text:
        if unicodedata.category(ch)[0] in "LNM":
            current.append(ch)
        elif current:
            out.append("".join(current))
            current = []
    if current:
        out.append("".join(current))
    return out


def _quoted(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


def word_query(text: str) -> str | None:
    """An FTS5 MATCH expression: any of the words (BM25 ranks items with more of them first)."""
    terms = list(dict.fromkeys(w.lower() for w in words(text)))[:_MAX_TERMS]
    return " OR ".join(_quoted(t) for t in terms) or None


def substring_query(text: str) -> str | None:
    """The whole query and each word of 3+ characters, as substrings (trigram index)."""
    whole = " ".join(text.split())
    terms = [whole] if len(whole) >= _MIN_TRIGRAM else []
    terms += [w for w in words(text) if len(w) >= _MIN_TRIGRAM]
    terms = list(dict.fromkeys(t.lower() for t in terms))[:_MAX_TERMS]
    return " OR ".join(_quoted(t) for t in terms) or None


def match(
    db: sqlite3.Connection, text: str, limit: int, allowed_sql: str = "", args: tuple = ()
) -> list[tuple[int, float]]:
    """(id, score) of the items whose text matches `text`, best first, at most `limit`.

    The score is the fused reciprocal rank over both indexes (higher is better).
    allowed_sql: a condition on `rowid` (with `args`) that results must meet.
    """
    fused: dict[int, float] = {}
    weights = ", ".join(str(w) for w in _WEIGHTS)
    for table, expression in (
        ("texts_words", word_query(text)),
        ("texts_trigram", substring_query(text)),
    ):
        if expression is None:
            continue
        condition = f" AND ({allowed_sql})" if allowed_sql else ""
        rows = db.execute(
            f"SELECT rowid FROM {table} WHERE {table} MATCH ?{condition}"
            f" ORDER BY bm25({table}, {weights}) LIMIT ?",
            (expression, *args, limit),
        ).fetchall()
        for rank, (item_id,) in enumerate(rows):
            fused[item_id] = fused.get(item_id, 0.0) + 1.0 / (_RRF_K + rank + 1)
    return sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
