"""Image-caption pair datasets for training and evaluation, read from four layouts.

- CSV (or .tsv): a header row naming the image column (`image`, `path`, `filepath` or `audio`)
  and the caption column (`caption`, `text` or `title`); several rows may share an image. With
  several file columns (`image` and `audio` in one mixed file) a row's file is its first filled one.
- JSON Lines (.jsonl, .ndjson): one object per line with the same keys; a caption may also be a
  list of strings (several captions for one image).
- a folder of images with same-name `.txt` captions (`cat.jpg` + `cat.txt`); every non-blank line
  of a .txt file is one caption.
- a folder tree whose folder names are labels: `root/golden_retriever/**/x.jpg` has the label and
  caption "golden retriever" (the first folder below the root names the class).

Relative image paths resolve against the folder of the CSV/JSONL file. Entries that cannot be
used (missing image, blank caption, bad JSON line...) are skipped and listed with a reason; only
a source with nothing usable at all, or a header that names no usable column, is an error.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xmodal.audio import AUDIO_EXTENSIONS
from xmodal.errors import InvalidInputError, MissingDataError
from xmodal.images import IMAGE_EXTENSIONS
from xmodal.scan import display_path, scan

IMAGE_KEYS = ("image", "path", "filepath", "audio")
CAPTION_KEYS = ("caption", "text", "title")
CSV_SUFFIXES = {".csv": ",", ".tsv": "\t"}
JSONL_SUFFIXES = (".jsonl", ".ndjson")
# Bytes read from each end of an image for its fingerprint: edits that keep the size and both
# ends intact are vanishingly rare for compressed images, and a full read of a big set is slow.
_FINGERPRINT_SAMPLE = 64 * 1024


@dataclass(frozen=True)
class Pair:
    image: Path  # absolute, resolved
    caption: str  # for a label tree: the label text
    label: str | None = None  # class label (label trees only)


@dataclass
class PairSet:
    pairs: list[Pair]
    skipped: list[tuple[str, str]]  # (row/file reference, reason)
    source: Path
    kind: str  # "csv" | "jsonl" | "captions" | "labels"

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def labels(self) -> list[str] | None:
        """Sorted distinct class labels of a label tree; None for captioned sets."""
        if self.kind != "labels":
            return None
        return sorted({p.label for p in self.pairs if p.label is not None})

    @property
    def base(self) -> Path:
        """The folder that relative image paths are taken from."""
        return self.source.parent if self.kind in ("csv", "jsonl") else self.source

    def relative(self, image: Path) -> str:
        """`image` relative to `base` with '/' separators: the same on every machine."""
        return Path(os.path.relpath(image, self.base)).as_posix()

    def fingerprint(self) -> str:
        """A stable hex digest of the data: the layout kind, each pair's image path relative to
        `base`, caption and label, plus each image's size and a hash of its first and last 64 KiB.

        Independent of pair order, of where the set lives (a moved or copied folder keeps its
        fingerprint) and of file times; it changes when a caption, a path or image bytes change.
        """
        entries = sorted(
            f"{self.relative(p.image)}\0{p.caption}\0{p.label or ''}" for p in self.pairs
        )
        h = hashlib.blake2b(digest_size=16)
        h.update(f"{self.kind}\n".encode())
        for entry in entries:
            h.update(entry.encode("utf-8", "surrogateescape") + b"\n")
        for image in sorted({p.image for p in self.pairs}, key=self.relative):
            h.update(_sample_digest(image))
        return h.hexdigest()

    def split(self, val_fraction: float = 0.2, seed: int = 0) -> tuple[PairSet, PairSet]:
        """(train, validation), the same on every run and machine for the same data and seed.

        Captioned sets are split by caption: every pair sharing a caption lands on one side, so
        validation captions are never seen in training. Label trees are split by image,
        per class, so each class with two or more images has images on both sides.
        Unique keys (captions, or a class's image paths) are ordered by a seeded hash and the
        first round(n * val_fraction) go to validation, at least one and at most n - 1 when
        n >= 2. The skipped list stays with this (the full) set.
        """
        if not 0 < val_fraction < 1:
            raise InvalidInputError(f"val_fraction must be between 0 and 1, got {val_fraction}")
        if self.kind == "labels":
            by_class: dict[str | None, list[str]] = {}
            for p in self.pairs:
                by_class.setdefault(p.label, []).append(self.relative(p.image))
            val_keys = set()
            for paths in by_class.values():
                val_keys |= _pick(set(paths), val_fraction, seed)
            is_val = [self.relative(p.image) in val_keys for p in self.pairs]
        else:
            val_keys = _pick({p.caption for p in self.pairs}, val_fraction, seed)
            is_val = [p.caption in val_keys for p in self.pairs]
        train = [p for p, v in zip(self.pairs, is_val) if not v]
        val = [p for p, v in zip(self.pairs, is_val) if v]
        return (
            PairSet(train, [], self.source, self.kind),
            PairSet(val, [], self.source, self.kind),
        )


def _pick(keys: set[str], fraction: float, seed: int) -> set[str]:
    """The round(len * fraction) keys first in seeded-hash order, but at least one key on each
    side whenever there are two or more."""
    n = round(len(keys) * fraction)
    if len(keys) >= 2:
        n = min(max(n, 1), len(keys) - 1)

    def rank(key: str) -> bytes:
        return hashlib.blake2b(f"{seed}\0{key}".encode("utf-8", "surrogateescape")).digest()

    return set(sorted(keys, key=rank)[:n])


def _sample_digest(path: Path) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            h.update(size.to_bytes(8, "little"))
            h.update(f.read(_FINGERPRINT_SAMPLE))
            if size > 2 * _FINGERPRINT_SAMPLE:
                f.seek(-_FINGERPRINT_SAMPLE, os.SEEK_END)
            h.update(f.read())
    except OSError:
        h.update(b"unreadable")  # deleted since loading: the fingerprint still changes
    return h.digest()


def group_pairs(pairs: Sequence[Pair]) -> tuple[list[Path], list[str], np.ndarray]:
    """(unique images, unique captions, relevant[n_texts, n_images]), both in order of first
    appearance; relevant[t, i] is True where caption t describes image i. A caption shared by
    several images is one text relevant to all of them."""
    images: dict[Path, int] = {}
    texts: dict[str, int] = {}
    for p in pairs:
        images.setdefault(p.image, len(images))
        texts.setdefault(p.caption, len(texts))
    relevant = np.zeros((len(texts), len(images)), dtype=bool)
    for p in pairs:
        relevant[texts[p.caption], images[p.image]] = True
    return list(images), list(texts), relevant


# -- loading ---------------------------------------------------------------------------------------


def load_pairs(path: str | Path) -> PairSet:
    """Read a pair dataset, detecting its layout from what `path` is (see the module doc)."""
    # Resolved like the image paths, so relative paths (fingerprint, split) never climb out
    # through a symbolic link in the folder's path.
    source = Path(path).expanduser().resolve()
    if not source.exists():
        raise MissingDataError(f"{display_path(source)}: no such file or folder")
    if source.is_dir():
        pairset = _load_folder(source)
    elif source.suffix.lower() in CSV_SUFFIXES:
        pairset = PairSet([], [], source, "csv")
        _read_csv(pairset, CSV_SUFFIXES[source.suffix.lower()])
    elif source.suffix.lower() in JSONL_SUFFIXES:
        pairset = PairSet([], [], source, "jsonl")
        _read_jsonl(pairset)
    else:
        raise InvalidInputError(
            f"{display_path(source)}: not a pair dataset; give a .csv, .tsv or .jsonl file, "
            "a folder of images with same-name .txt captions, or a folder of label folders"
        )
    if not pairset.pairs:
        reasons = "; ".join(f"{ref}: {why}" for ref, why in pairset.skipped[:3])
        raise InvalidInputError(
            f"{display_path(source)}: no usable image-caption pairs "
            f"({len(pairset.skipped)} entries skipped{', e.g. ' + reasons if reasons else ''})"
        )
    return pairset


def clean_caption(text: str) -> str:
    """Whitespace runs become one space, ends trimmed: 'a  cat\\n' and 'a cat' are one caption."""
    return " ".join(text.split())


def _open_text(source: Path):
    try:
        # utf-8-sig: spreadsheet programs start their CSV exports with a byte-order mark.
        return open(source, encoding="utf-8-sig", newline="")
    except OSError as e:
        raise InvalidInputError(f"{display_path(source)}: cannot read: {e.strerror}") from None


def _add(pairset: PairSet, ref: str, image: object, caption: object, label=None) -> None:
    """Check one entry and append it as a pair, or record why it was skipped."""
    if not isinstance(image, str) or not image.strip():
        pairset.skipped.append((ref, "no image path"))
        return
    captions = caption if isinstance(caption, list) else [caption]
    texts = [clean_caption(c) if isinstance(c, str) else "" for c in captions]
    if not any(texts):
        pairset.skipped.append((ref, "empty caption"))
        return
    file = Path(image.strip()).expanduser()
    file = (file if file.is_absolute() else pairset.base / file).resolve()
    if not file.is_file():
        why = "is a folder, not an image file" if file.is_dir() else "image file not found"
        pairset.skipped.append((ref, f"{why}: {display_path(file)}"))
        return
    pairset.pairs.extend(Pair(file, text, label) for text in texts if text)


def _pick_column(names: Iterable[str], wanted: tuple[str, ...]) -> str | None:
    return next(iter(_pick_columns(names, wanted)), None)


def _pick_columns(names: Iterable[str], wanted: tuple[str, ...]) -> list[str]:
    by_lower = {n.strip().lower(): n for n in names if n is not None}
    return [by_lower[w] for w in wanted if w in by_lower]


def _first_filled(entry: dict, columns: list[str]) -> object:
    """The first non-blank value among `columns`: a mixed file fills `image` on some rows and
    `audio` on others. With none filled, the first column's value (for the reason given)."""
    for column in columns:
        value = entry.get(column)
        if isinstance(value, str) and value.strip():
            return value
    return entry.get(columns[0])


def _read_csv(pairset: PairSet, delimiter: str) -> None:
    name = display_path(pairset.source)
    with _open_text(pairset.source) as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        try:
            columns = reader.fieldnames or []
            if not columns:
                raise InvalidInputError(f"{name}: empty file, expected a header row")
            image_cols = _pick_columns(columns, IMAGE_KEYS)
            caption_col = _pick_column(columns, CAPTION_KEYS)
            if not image_cols or caption_col is None:
                raise InvalidInputError(
                    f"{name}: header has columns {columns}; it needs an image column "
                    f"({', '.join(IMAGE_KEYS)}) and a caption column ({', '.join(CAPTION_KEYS)})"
                )
            for row in reader:
                ref = f"{pairset.source.name}:{reader.line_num}"
                _add(pairset, ref, _first_filled(row, image_cols), row.get(caption_col))
        except UnicodeDecodeError:
            raise InvalidInputError(
                f"{name}: not UTF-8 text (near line {reader.line_num + 1})"
            ) from None
        except csv.Error as e:
            raise InvalidInputError(f"{name}, line {reader.line_num}: {e}") from None


def _read_jsonl(pairset: PairSet) -> None:
    name = display_path(pairset.source)
    keys_seen: set[str] = set()
    with _open_text(pairset.source) as f:
        for number, line in _numbered_lines(f, name):
            ref = f"{pairset.source.name}:{number}"
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as e:
                pairset.skipped.append((ref, f"not valid JSON: {e}"))
                continue
            if not isinstance(record, dict):
                pairset.skipped.append((ref, "not a JSON object"))
                continue
            keys_seen.update(record)
            image_keys = _pick_columns(record, IMAGE_KEYS)
            caption_key = _pick_column(record, CAPTION_KEYS)
            if not image_keys or caption_key is None:
                missing = "image" if not image_keys else "caption"
                pairset.skipped.append((ref, f"no {missing} key"))
                continue
            _add(pairset, ref, _first_filled(record, image_keys), record[caption_key])
    if (
        keys_seen
        and not pairset.pairs
        and (
            _pick_column(keys_seen, IMAGE_KEYS) is None
            or _pick_column(keys_seen, CAPTION_KEYS) is None
        )
    ):
        raise InvalidInputError(
            f"{name}: records have keys {sorted(keys_seen)}; each needs an image key "
            f"({', '.join(IMAGE_KEYS)}) and a caption key ({', '.join(CAPTION_KEYS)})"
        )


def _numbered_lines(f, name: str) -> Iterator[tuple[int, str]]:
    number = 0
    try:
        for number, line in enumerate(f, 1):
            yield number, line
    except UnicodeDecodeError:
        raise InvalidInputError(f"{name}: not UTF-8 text (near line {number + 1})") from None


def _load_folder(root: Path) -> PairSet:
    found = scan([root], extensions=IMAGE_EXTENSIONS | AUDIO_EXTENSIONS)
    images = [Path(os.fsdecode(f.path)) for f in found.files]
    problems = [(display_path(p), why) for p, why in found.problems]
    if not images:
        raise InvalidInputError(
            f"{display_path(root)}: no images or sounds found (looked for "
            f"{', '.join(sorted(IMAGE_EXTENSIONS | AUDIO_EXTENSIONS))})"
        )
    if any(image.with_suffix(".txt").is_file() for image in images):
        pairset = PairSet([], problems, root, "captions")
        for image in images:
            _add_captioned(pairset, image)
    else:
        pairset = PairSet([], problems, root, "labels")
        for image in images:
            _add_labelled(pairset, image)
    return pairset


def _add_captioned(pairset: PairSet, image: Path) -> None:
    ref = pairset.relative(image)
    txt = image.with_suffix(".txt")
    try:
        text = txt.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        pairset.skipped.append((ref, f"no caption file {txt.name}"))
        return
    except UnicodeDecodeError:
        pairset.skipped.append((ref, f"caption file {txt.name} is not UTF-8 text"))
        return
    except OSError as e:
        pairset.skipped.append((ref, f"cannot read caption file {txt.name}: {e.strerror}"))
        return
    _add(pairset, ref, str(image), [line for line in text.splitlines() if line.strip()])


def _add_labelled(pairset: PairSet, image: Path) -> None:
    parts = Path(pairset.relative(image)).parts
    if len(parts) < 2:
        pairset.skipped.append((parts[-1], "not inside a label folder"))
        return
    label = clean_caption(parts[0].replace("_", " ").replace("-", " "))
    _add(pairset, "/".join(parts), str(image), label, label)
