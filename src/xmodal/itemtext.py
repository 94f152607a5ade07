"""Text that belongs to an indexed file: sidecar captions, descriptions embedded in the image,
the words of its name, words printed on it (OCR), and a text item's own body.

The catalog stores each part in its own full-text column, so a query can weigh a caption above a
file name, and `ask` can show where a line of context came from.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields

from xmodal.embedded import cap_utf8, embedded_text, join_parts


@dataclass(frozen=True)
class ItemText:
    caption: str = ""  # sidecar NAME.txt / NAME.json beside the file
    embedded: str = ""  # EXIF / XMP / IPTC / PNG descriptions, titles, keywords
    filename: str = ""  # the words of the file name
    ocr: str = ""  # words printed on the image (`xmodal index --ocr`)
    body: str = ""  # a text item's own content (.txt, .md)

    FIELDS = ("caption", "embedded", "filename", "ocr", "body")

    def any(self) -> bool:
        return any(getattr(self, f) for f in self.FIELDS)

    def combined(self, *, with_filename: bool = False) -> str:
        """The descriptive parts as one text (the file name only if asked: it is often noise)."""
        parts = [getattr(self, f.name) for f in fields(self)]
        if not with_filename:
            parts[2] = ""
        return "\n".join(p for p in parts if p)


# -- the lead's (scan.py and the indexer use these; keep them) ----------------------------------

# Extensions of files that can be an image's sidecar caption rather than an item of their own.
SIDECAR_EXTENSIONS = frozenset({".txt", ".json"})


def sidecar_candidates(name: bytes) -> tuple[bytes, ...]:
    """The names a sidecar caption of image file `name` may have, in the order they are read:
    NAME.txt, NAME.jpg.txt, NAME.json, NAME.jpg.json (Google Takeout), and Takeout's newer
    NAME.jpg.supplemental-metadata.json."""
    import os

    stem = os.path.splitext(name)[0]
    return (
        stem + b".txt",
        name + b".txt",
        stem + b".json",
        name + b".json",
        name + b".supplemental-metadata.json",
    )


def is_text_item(path: bytes) -> bool:
    """Whether a file is indexed as a text item (by its extension)."""
    import os

    return os.path.splitext(path)[1].lower().decode("ascii", "replace") in TEXT_EXTENSIONS


# -- helpers' part: sidecars, embedded metadata, file names, text items --------------------------

TEXT_EXTENSIONS = frozenset({".txt", ".md", ".markdown"})

_SIDECAR_CAP = 64 * 1024  # bytes read of one sidecar file
_BODY_CAP = 64 * 1024  # bytes of a text item's body kept
_BINARY_PROBE = 8 * 1024  # a NUL among the first this many characters: not a text file

# Extensions that make a sidecar's "title" just the name of a file (Takeout's upload name).
_MEDIA_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".gif", ".webp", ".heic", ".heif", ".avif", ".tif", ".tiff"}
    | {".bmp", ".dng", ".mp4", ".mov", ".m4v", ".3gp", ".avi", ".mkv"}
)


def item_text_for(path: bytes, data: bytes) -> ItemText:
    """The text of image file `path` (whose bytes are `data`) that is known before OCR."""
    return ItemText(
        caption=sidecar_texts(path), embedded=embedded_text(data), filename=filename_words(path)
    )


def sidecar_texts(path: bytes) -> str:
    """The captions in the sidecar files beside image `path` ('' if none): plain text files as
    they are, JSON files' caption, description, title, tags, keywords and people's names.
    A sidecar that cannot be read, decoded or parsed is passed over."""
    folder, name = os.path.split(path)
    parts: list[str] = []
    for candidate in sidecar_candidates(name):
        try:
            with open(os.path.join(folder, candidate), "rb") as f:
                raw = f.read(_SIDECAR_CAP + 1)
        except OSError:
            continue
        try:
            text = _decode_prefix(raw[:_SIDECAR_CAP], truncated=len(raw) > _SIDECAR_CAP)
        except UnicodeDecodeError:
            continue
        if "\x00" in text:
            continue
        if candidate.endswith(b".json"):
            parts += _json_captions(text, name.decode("utf-8", "replace"))
        else:
            parts.append(text)
    return join_parts(parts, _SIDECAR_CAP)


def _json_captions(text: str, image_name: str) -> list[str]:
    import json

    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return []
    if not isinstance(data, dict):
        return []
    data = {k.lower(): v for k, v in data.items()}
    parts = [data.get("caption"), data.get("description")]
    title = data.get("title")
    if isinstance(title, str) and not _is_file_name(title, image_name):
        parts.append(title)
    for key in ("tags", "keywords"):
        values = data.get(key)
        if isinstance(values, str):
            values = values.split(",")
        if isinstance(values, list):
            parts += [v.get("name") if isinstance(v, dict) else v for v in values]
    people = data.get("people")
    if isinstance(people, list):
        parts += [p.get("name") for p in people if isinstance(p, dict)]
    return [p for p in parts if isinstance(p, str)]


def _is_file_name(title: str, image_name: str) -> bool:
    title = title.strip().casefold()
    name = image_name.casefold()
    return (
        title in (name, os.path.splitext(name)[0])
        or os.path.splitext(title)[1] in _MEDIA_EXTENSIONS
    )


def filename_words(path: bytes | str) -> str:
    """The words of a file's name without its extension: split at punctuation, spaces, symbols
    and camelCase humps. Letters keep their combining marks (Devanagari vowel signs, viramas)."""
    import unicodedata

    if isinstance(path, str):
        path = os.fsencode(path)
    stem = os.path.splitext(os.path.basename(path))[0].decode("utf-8", "replace")
    words, word = [], []
    for ch in stem:
        # Letters (L), marks (M), numbers (N), emoji (So) and joiners (Cf: ZWJ/ZWNJ) make words.
        category = unicodedata.category(ch)
        if category[0] in "LMN" or category in ("So", "Cf"):
            word.append(ch)
        elif word:
            words.append("".join(word))
            word = []
    if word:
        words.append("".join(word))
    return " ".join(w for word in words for w in _camel_split(word))


def _camel_split(word: str) -> list[str]:
    """'redCarFront' -> red, Car, Front; 'HTMLParser' -> HTML, Parser; 'IMG' stays whole."""
    pieces, start = [], 0
    for i in range(1, len(word)):
        prev, cur, nxt = word[i - 1], word[i], word[i + 1 : i + 2]
        if cur.isupper() and (prev.islower() or (prev.isupper() and nxt.islower())):
            pieces.append(word[start:i])
            start = i
    pieces.append(word[start:])
    return pieces


def is_sidecar(path: bytes, siblings: set[bytes]) -> bool:
    """Whether `path` (.txt or .json) is the sidecar caption of an image beside it: NAME.txt
    beside NAME.<image ext>, NAME.jpg.txt / NAME.jpg.json / NAME.jpg.supplemental-metadata.json
    beside NAME.jpg. `siblings` holds the names (or the full paths) of the files in its folder."""
    from xmodal.images import IMAGE_EXTENSIONS

    folder, name = os.path.split(path)
    stem, ext = os.path.splitext(name)
    if ext.lower().decode("ascii", "replace") not in SIDECAR_EXTENSIONS:
        return False
    if ext.lower() == b".json" and stem.endswith(b".supplemental-metadata"):
        stem = stem[: -len(b".supplemental-metadata")]

    def present(candidate: bytes) -> bool:
        return candidate in siblings or os.path.join(folder, candidate) in siblings

    inner = os.path.splitext(stem)[1].lower().decode("ascii", "replace")
    if inner in IMAGE_EXTENSIONS and present(stem):
        return True
    return any(
        present(stem + image_ext.encode()) or present(stem + image_ext.upper().encode())
        for image_ext in IMAGE_EXTENSIONS
    )


def read_text_item(data: bytes, path: bytes) -> str:
    """The body of a plain text or Markdown file as one line of words (Markdown markup stripped
    lightly, at most 64 KiB). Raises InvalidInputError for binary, undecodable or blank files."""
    from xmodal.errors import InvalidInputError

    # 4 bytes a character at most: this prefix holds every character that can be kept.
    prefix = data[: 4 * _BODY_CAP]
    try:
        text = _decode_prefix(prefix, truncated=len(data) > len(prefix))
    except UnicodeDecodeError as e:
        raise InvalidInputError(
            f"not a text file: invalid {e.encoding.upper()} at byte {e.start}"
        ) from None
    if "\x00" in text[:_BINARY_PROBE]:
        raise InvalidInputError("not a text file: binary data (a NUL byte)")
    if os.path.splitext(path)[1].lower() in (b".md", b".markdown"):
        text = _strip_markdown(text, _BODY_CAP)
    text = cap_utf8(" ".join(text.replace("\x00", " ").split()), _BODY_CAP)
    if not text:
        raise InvalidInputError("empty text file")
    return text


def _decode_prefix(raw: bytes, *, truncated: bool) -> str:
    """UTF-8 (a BOM allowed) or UTF-16 with a BOM; a character cut at the end of a truncated
    prefix is dropped. Raises UnicodeDecodeError for anything else."""
    import codecs

    encoding = "utf-16" if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) else None
    try:
        return raw.decode(encoding or "utf-8-sig")
    except UnicodeDecodeError as e:
        if not truncated or e.end < len(raw):
            raise
        return raw[: e.start].decode(encoding or "utf-8-sig")


def _strip_markdown(text: str, limit: int) -> str:
    """Headings, quotes, list markers, rules, emphasis, links and HTML tags out; the words of
    code blocks stay. Stops once `limit` characters are kept."""
    lines, in_fence, kept = [], False, 0
    for line in text.splitlines():
        if kept >= limit:
            break
        if _MD_FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            if _MD_DROPPED_LINE.match(line):
                continue
            for pattern, replacement in _MD_RULES:
                line = pattern.sub(replacement, line)
        lines.append(line)
        kept += len(line) + 1
    return "\n".join(lines)


_MD_FENCE = re.compile(r"^\s{0,3}(?:```|~~~)")
# Rules (---, ***, ===), table separators (|---|:--:|) and link definitions ([x]: url).
_MD_DROPPED_LINE = re.compile(
    r"^\s{0,3}(?:[-=*_]\s*){3,}$|^\s*\|?\s*:?-+:?\s*(?:\|\s*:?-+:?\s*)*\|?\s*$"
    r"|^\s{0,3}\[[^\]]+\]:\s+\S+\s*$"
)
_MD_RULES = [
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (r"^\s{0,3}(?:>\s?)+", ""),  # block quotes
        (r"^\s{0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$", r"\1"),  # ATX headings
        (r"^\s*(?:[*+-]|\d{1,9}[.)])\s+(?:\[[ xX]\]\s+)?", ""),  # list markers, task boxes
        (r"`+([^`]+)`+", r"\1"),  # inline code
        (r"!\[([^\]]*)\]\([^)]*\)", r"\1"),  # images: their alt text
        (r"\[([^\]]+)\]\([^)]*\)", r"\1"),  # links: their text
        (r"\[([^\]]+)\]\[[^\]]*\]", r"\1"),  # reference links
        (r"<((?:https?|mailto):[^>\s]+)>", r"\1"),  # autolinks
        (r"<!--.*?-->|</?[A-Za-z][^<>\n]*>", " "),  # HTML comments and tags
        (r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1", r"\2"),  # strong
        (r"(?<![\w*])([*_])(?=\S)(.+?)(?<=\S)\1(?![\w*])", r"\2"),  # emphasis, not snake_case
        (r"~~(.+?)~~", r"\1"),  # strike-through
        (r"\s\|\s|^\s*\||\|\s*$", " "),  # table cell borders
        (r"\\([\\`*_{}\[\]()#+\-.!|~>])", r"\1"),  # backslash escapes
    )
]
