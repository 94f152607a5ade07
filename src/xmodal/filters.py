"""The `where` language: which items a search may return, parsed once for the library, the CLI
and the server, and compiled to SQL on the catalog's `files` table.

JSON form (the Python API and the server): an object whose keys must all hold.
    {"album": "trip"}                              metadata key equal to a string/number/boolean
    {"year": {">=": 2020, "<": 2025}}              metadata ranges (numbers compare with numbers,
                                                   strings with strings)
    {"size": {">": 100000}, "width": {">=": 1024}} built-in fields: size (bytes), width, height
    {"mtime": {">=": "2024-01-01"}}                mtime: epoch seconds or an ISO date/time (UTC
                                                   unless it has an offset); a bare date with "="
                                                   means that whole day
    {"path": {"prefix": "/photos/2024/"}}          path prefix (or a list: any of them); a plain
                                                   string is the exact path
    {"type": "text"}                               the item's kind: image, text (a .txt/.md),
                                                   audio, or video (a video's segments)
    {"metadata.size": 3}                           a metadata key named like a built-in field
Operators: "=", "<", "<=", ">", ">=", and "prefix" on path.

CLI form (`--where`, repeatable, all must hold): KEY=VALUE, KEY>VALUE, KEY>=VALUE, KEY<VALUE,
KEY<=VALUE, path^=PREFIX; VALUE is a JSON number or boolean, else text.

Built-in fields use SQLite indexes (migration 3; path is UNIQUE), and a path prefix is a range
on the stored bytes (never LIKE, so % and _ in names are plain characters).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from xmodal.errors import InvalidInputError

BUILTIN = {
    "size": "size",
    "width": "width",
    "height": "height",
    "mtime": "mtime_ns",
    "path": "path",
    "type": "kind",  # image, text, audio or video
}
ITEM_TYPES = ("image", "text", "audio", "video")
COMPARISONS = ("=", "<", "<=", ">", ">=")
METADATA_PREFIX = "metadata."
_CLI_TERM = re.compile(r"^(?P<key>[^<>=^]+?)\s*(?P<op>>=|<=|\^=|=|<|>)\s*(?P<value>.*)$", re.S)
# A key's JSON path is built from it, so quotes and control characters are refused.
_MAX_KEY = 200


@dataclass(frozen=True)
class Condition:
    """One test on a row: `column` is a files column, or None for metadata key `key`."""

    key: str
    column: str | None
    op: str
    value: Any  # int ns for mtime; a tuple of bytes for prefix; else a JSON scalar

    def sql(self) -> tuple[str, list[Any]]:
        if self.op == "prefix":
            return _prefix_sql(self.value)
        if self.column is not None:
            return f"{self.column} {self.op} ?", [self.value]
        path = f'$."{self.key}"'
        if self.op == "=":
            return "json_extract(metadata, ?) = ?", [path, self.value]
        # A range compares like with like: in SQLite any text sorts above every number.
        kinds = "'text'" if isinstance(self.value, str) else "'integer', 'real'"
        return (
            f"(json_type(metadata, ?) IN ({kinds}) AND json_extract(metadata, ?) {self.op} ?)",
            [path, path, self.value],
        )


@dataclass(frozen=True)
class Filter:
    """Conditions that must all hold; hashable, so allowed-id sets can be cached by it."""

    conditions: tuple[Condition, ...]

    def sql(self) -> tuple[str, list[Any]]:
        """A WHERE clause on `files` and its arguments."""
        parts, args = [], []
        for condition in self.conditions:
            part, more = condition.sql()
            parts.append(part)
            args += more
        return " AND ".join(parts) or "1", args


def parse_filter(where: Filter | Mapping[str, Any] | None) -> Filter | None:
    """The JSON form (see the module doc) as a Filter; None or {} for no filter."""
    if where is None or isinstance(where, Filter):
        return where or None
    if not isinstance(where, Mapping):
        raise InvalidInputError(f"where must be an object of keys and values, not {where!r}")
    conditions: list[Condition] = []
    for key, spec in where.items():
        conditions += _conditions(key, spec)
    return Filter(tuple(conditions)) if conditions else None


def parse_terms(terms: Sequence[str], *, cwd: str | None = None) -> dict[str, Any] | None:
    """CLI terms (KEY=VALUE, KEY>=VALUE, path^=PREFIX ...) as the JSON form. A relative path
    prefix is taken from `cwd` (default: the current folder), its trailing slash kept."""
    where: dict[str, Any] = {}
    for term in terms:
        match = _CLI_TERM.match(term)
        if match is None:
            raise InvalidInputError(
                f"--where {term!r}: use KEY=VALUE, KEY>VALUE, KEY>=VALUE, KEY<VALUE, "
                "KEY<=VALUE or path^=PREFIX"
            )
        key, op, raw = match["key"].strip(), match["op"], match["value"]
        if op == "^=":
            if key != "path":
                raise InvalidInputError(f"--where {term!r}: ^= (prefix) works on path only")
            op, value = "prefix", _absolute_prefix(raw, cwd)
        else:
            value = _cli_value(raw)
        ops = where.setdefault(key, {})
        if op in ops:
            raise InvalidInputError(f"--where: {key}{'^=' if op == 'prefix' else op} given twice")
        ops[op] = value
    return where or None


# -- parsing the JSON form --------------------------------------------------------------------


def _conditions(key: Any, spec: Any) -> list[Condition]:
    if not isinstance(key, str) or not key or len(key) > _MAX_KEY:
        raise InvalidInputError(f"filter key {key!r}: use a non-empty name")
    column = BUILTIN.get(key)
    if column is None:
        key = key.removeprefix(METADATA_PREFIX) or key
        if '"' in key or "\\" in key or not key.isprintable():
            raise InvalidInputError(f"metadata key {key!r}: use printable text, no quotes")
    ops = spec if isinstance(spec, Mapping) else {"=": spec}
    if not ops:
        raise InvalidInputError(f"filter {key!r}: give at least one operator")
    out = []
    for op, value in ops.items():
        if op == "prefix":
            if key != "path" or column is None:
                raise InvalidInputError(f"filter {key!r}: prefix works on path only")
            out.append(Condition(key, column, op, _prefixes(value)))
            continue
        if op not in COMPARISONS:
            raise InvalidInputError(
                f"filter {key!r}: unknown operator {op!r} (use {', '.join(COMPARISONS)}"
                + (", prefix)" if key == "path" else ")")
            )
        out += _comparison(key, column, op, value)
    return out


def _comparison(key: str, column: str | None, op: str, value: Any) -> list[Condition]:
    if column is None:
        if value is None or not isinstance(value, (str, int, float, bool)) or _bad_number(value):
            raise InvalidInputError(
                f"metadata filter {key!r}: compare with a string, number or boolean, not {value!r}"
            )
        if op != "=" and isinstance(value, bool):
            raise InvalidInputError(f"metadata filter {key!r}: booleans take = only")
        return [Condition(key, None, op, value)]
    if key == "path":
        if op != "=" or not isinstance(value, str) or not value:
            raise InvalidInputError(
                'filter "path": give a path, or {"prefix": "/folder/"} (CLI: path^=/folder/)'
            )
        return [Condition(key, column, op, os.fsencode(value))]
    if key == "type":
        if op != "=" or value not in ITEM_TYPES:
            raise InvalidInputError(f'filter "type": use type={" or type=".join(ITEM_TYPES)}')
        return [Condition(key, column, op, value)]
    if key == "mtime":
        if isinstance(value, str) and _DATE_ONLY.match(value.strip()) and op == "=":
            start = _mtime_ns(value, key)
            end = start + int(timedelta(days=1).total_seconds() * 1e9)
            return [Condition(key, column, ">=", start), Condition(key, column, "<", end)]
        return [Condition(key, column, op, _mtime_ns(value, key))]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or _bad_number(value):
        raise InvalidInputError(f"filter {key!r}: compare with a number, not {value!r}")
    return [Condition(key, column, op, value)]


_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _mtime_ns(value: Any, key: str) -> int:
    """Epoch seconds or an ISO date/time (UTC unless it says otherwise) as nanoseconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not _bad_number(value):
        ns = round(value * 1e9)
        if not _bad_number(ns):
            return ns
    if isinstance(value, str):
        text = value.strip()
        try:
            if _DATE_ONLY.match(text):
                moment = datetime.combine(date.fromisoformat(text), datetime.min.time())
            else:
                moment = datetime.fromisoformat(text)
        except ValueError:
            pass
        else:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            ns = round(moment.timestamp() * 1e9)
            if not _bad_number(ns):
                return ns
    raise InvalidInputError(
        f"filter {key!r}: give epoch seconds or a date such as 2024-01-01 or "
        f"2024-01-01T12:00:00+02:00, not {value!r}"
    )


def _bad_number(value: Any) -> bool:
    """NaN, infinities, and integers beyond SQLite's 64 bits."""
    if isinstance(value, float):
        return not math.isfinite(value)
    return isinstance(value, int) and not -(2**63) <= value < 2**63


def _prefixes(value: Any) -> tuple[bytes, ...]:
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, str) and v for v in values):
        raise InvalidInputError(
            f'filter "path": prefix takes a non-empty string or a list of them, not {value!r}'
        )
    return tuple(os.fsencode(v) for v in values)


def _prefix_sql(prefixes: tuple[bytes, ...]) -> tuple[str, list[Any]]:
    """Ranges on the path BLOB (its UNIQUE index answers them): p <= path < successor(p)."""
    parts, args = [], []
    for prefix in prefixes:
        upper = _successor(prefix)
        if upper is None:
            parts.append("path >= ?")
            args.append(prefix)
        else:
            parts.append("(path >= ? AND path < ?)")
            args += [prefix, upper]
    return "(" + " OR ".join(parts) + ")", args


def _successor(prefix: bytes) -> bytes | None:
    """The smallest byte string above every string starting with prefix (None: there is none)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


# -- the CLI form -----------------------------------------------------------------------------


def _cli_value(raw: str) -> Any:
    try:
        value = json.loads(raw)
    except ValueError:
        return raw
    return value if isinstance(value, (int, float, bool)) and not _bad_number(value) else raw


def _absolute_prefix(raw: str, cwd: str | None) -> str:
    if not raw:
        raise InvalidInputError("--where path^=: give a prefix")
    expanded = os.path.expanduser(raw)
    if os.path.isabs(expanded):
        return expanded
    joined = os.path.join(cwd or os.getcwd(), expanded)
    trailing = os.sep if expanded.endswith(("/", os.sep)) else ""
    return os.path.normpath(joined) + trailing
