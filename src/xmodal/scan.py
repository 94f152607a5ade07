"""Walking folders for image (and text, sound, video) files: one stat per file, safe with symlink
loops and odd names. Sidecar captions (NAME.txt, NAME.jpg.json ... beside NAME.jpg or NAME.wav)
are not items: their sizes and mtimes become the file's `sidecars` stamp, so an edited caption
is noticed.

Everything here works on bytes paths (os.fsencode), so a file name that is not valid UTF-8 is
found, stored and opened like any other; `display_path` makes one printable.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field

from xmodal.audio import AUDIO_EXTENSIONS, VIDEO_EXTENSIONS
from xmodal.images import IMAGE_EXTENSIONS
from xmodal.itemtext import SIDECAR_EXTENSIONS, sidecar_candidates

PathLike = str | bytes | os.PathLike
# Files that sidecar captions can belong to.
_CAPTIONED_EXTS = frozenset(
    e.encode() for e in IMAGE_EXTENSIONS | AUDIO_EXTENSIONS | VIDEO_EXTENSIONS
)
_SIDECAR_EXTS = frozenset(e.encode() for e in SIDECAR_EXTENSIONS)


@dataclass(frozen=True)
class FoundFile:
    path: bytes  # absolute, as reached from its root (symlinks not resolved)
    size: int
    mtime_ns: int
    sidecars: str = ""  # "name:size:mtime_ns" of each sidecar caption file beside it


@dataclass
class ScanResult:
    files: list[FoundFile] = field(default_factory=list)
    roots: list[bytes] = field(default_factory=list)  # the given roots that exist, absolute
    # Folders that could not be listed: what was under them is unknown, not deleted.
    unlisted: list[bytes] = field(default_factory=list)
    problems: list[tuple[bytes, str]] = field(default_factory=list)  # (path, reason)


def to_bytes(path: PathLike) -> bytes:
    """An absolute, normalised bytes path (symlinks kept: it is the path the user sees)."""
    return os.path.abspath(os.fsencode(path))


def display_path(path: PathLike) -> str:
    """A printable form: bytes that are not UTF-8 appear as \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def is_under(path: bytes, root: bytes) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep.encode()) + os.sep.encode())


def scan(
    roots: Iterable[PathLike],
    *,
    follow_symlinks: bool = False,
    extensions: Iterable[str] = IMAGE_EXTENSIONS,
) -> ScanResult:
    """Image files under `roots` (folders walked recursively; files taken as they are).

    A symlink is followed when its target lies inside one of the roots, or always with
    follow_symlinks=True; either way each folder and each file is visited once, by
    (st_dev, st_ino), so loops end and a file reached twice is listed once.
    """
    wanted = {e.lower().encode() for e in extensions}
    result = ScanResult()
    given = list(dict.fromkeys(to_bytes(r) for r in roots))
    real_roots = [os.path.realpath(r) for r in given]
    visited: set[tuple[int, int]] = set()
    folders: list[bytes] = []

    def add_file(path: bytes, st: os.stat_result, sidecars: str) -> None:
        if (st.st_dev, st.st_ino) not in visited:
            visited.add((st.st_dev, st.st_ino))
            result.files.append(FoundFile(path, st.st_size, st.st_mtime_ns, sidecars))

    def enter_folder(path: bytes, st: os.stat_result) -> None:
        if (st.st_dev, st.st_ino) not in visited:
            visited.add((st.st_dev, st.st_ino))
            folders.append(path)

    for root in given:
        try:
            st = os.stat(root)
        except OSError as e:
            result.problems.append((root, _reason(e)))
            continue
        result.roots.append(root)
        if stat.S_ISDIR(st.st_mode):
            enter_folder(root, st)
        elif stat.S_ISREG(st.st_mode):
            # A file named directly is taken whatever its extension.
            parent, name = os.path.split(root)
            add_file(root, st, _stamp(name, lambda n, p=parent: _stat(os.path.join(p, n))))

    while folders:
        folder = folders.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            result.unlisted.append(folder)
            result.problems.append((folder, f"cannot list folder: {_reason(e)}"))
            continue
        # Sidecar candidates of this folder, stat'ed only when an image here claims one.
        beside = {
            e.name: e for e in entries if os.path.splitext(e.name)[1].lower() in _SIDECAR_EXTS
        }
        claimed: set[bytes] = set()
        here: list[tuple[bytes, bytes, os.stat_result]] = []
        for entry in entries:
            is_image = os.path.splitext(entry.name)[1].lower() in wanted
            try:
                # is_symlink and is_dir come from the listing itself; only folders, links and
                # image files cost a stat.
                if entry.is_symlink():
                    inside = any(is_under(os.path.realpath(entry.path), r) for r in real_roots)
                    if not (follow_symlinks or inside):
                        continue
                    st = os.stat(entry.path)
                elif entry.is_dir(follow_symlinks=False) or is_image:
                    st = entry.stat(follow_symlinks=False)
                else:
                    continue
            except OSError as e:
                if is_image:  # a dangling link, or a file deleted while we walked
                    result.problems.append((entry.path, _reason(e)))
                continue
            if stat.S_ISDIR(st.st_mode):
                enter_folder(entry.path, st)
            elif stat.S_ISREG(st.st_mode) and is_image:
                here.append((entry.name, entry.path, st))
        for name, _, _ in here:
            if os.path.splitext(name)[1].lower() in _CAPTIONED_EXTS:
                claimed.update(n for n in sidecar_candidates(name) if n in beside)
        for name, path, st in here:
            if name in claimed:
                continue  # a caption of an image beside it, not an item of its own
            sidecars = ""
            if os.path.splitext(name)[1].lower() in _CAPTIONED_EXTS:
                sidecars = _stamp(name, lambda n, b=beside: _entry_stat(b.get(n)))
            add_file(path, st, sidecars)
    result.files.sort(key=lambda f: f.path)
    return result


def _stamp(name: bytes, stat_of) -> str:
    """The sizes and mtimes of `name`'s sidecar files that exist ('' if none)."""
    parts = []
    for candidate in sidecar_candidates(name):
        st = stat_of(candidate)
        if st is not None and stat.S_ISREG(st.st_mode):
            parts.append(f"{os.fsdecode(candidate)}:{st.st_size}:{st.st_mtime_ns}")
    return ";".join(parts)


def _stat(path: bytes) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def _entry_stat(entry: os.DirEntry | None) -> os.stat_result | None:
    if entry is None:
        return None
    try:
        return entry.stat()
    except OSError:
        return None


def _reason(error: OSError) -> str:
    if isinstance(error, FileNotFoundError):
        return "no such file or folder (or a broken symbolic link)"
    if isinstance(error, PermissionError):
        return "permission denied"
    return error.strerror or str(error)
