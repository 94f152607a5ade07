"""Text that belongs to an indexed file: sidecar captions, descriptions embedded in the image,
the words of its name, words printed on it (OCR), and a text item's own body.

The catalog stores each part in its own full-text column, so a query can weigh a caption above a
file name, and `ask` can show where a line of context came from.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


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


def filename_words(path: bytes) -> str:
    """(lead's placeholder: the helper writing this module replaces it) The stem as words."""
    import os
    import re

    stem = os.path.splitext(os.path.basename(path))[0].decode("utf-8", "replace")
    return " ".join(re.split(r"[\s_\-.()\[\]]+", stem)).strip()


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


# -- lead's temporary placeholders until the helper's versions land (delete then) ---------------
TEXT_EXTENSIONS = frozenset({".txt", ".md", ".markdown"})


def sidecar_texts(path: bytes) -> str:
    import json
    import os

    parts = []
    for name in sidecar_candidates(os.path.basename(path)):
        candidate = os.path.join(os.path.dirname(path), name)
        try:
            with open(candidate, "rb") as f:
                raw = f.read(65536).decode("utf-8", "replace")
        except OSError:
            continue
        if candidate.endswith(b".json"):
            try:
                data = json.loads(raw)
            except ValueError:
                continue
            parts += [str(data[k]) for k in ("caption", "description", "title") if data.get(k)]
        elif raw.strip():
            parts.append(raw.strip())
    return ". ".join(dict.fromkeys(parts))


def embedded_text(data: bytes) -> str:
    return ""


def read_text_item(data: bytes, path: bytes) -> str:
    from xmodal.errors import InvalidInputError

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError("not a text file") from None
    if not text.strip():
        raise InvalidInputError("empty text file")
    return " ".join(text.split())
