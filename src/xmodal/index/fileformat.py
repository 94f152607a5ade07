"""The file a saved index lives in: an uncompressed zip of meta.json, .npy arrays and .faiss
indexes. Zip stores a CRC-32 per member, so a corrupt or truncated file is caught on read.

Knows nothing of index kinds: the factory turns (meta, members) into an index.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

from xmodal.atomic import atomic_write
from xmodal.errors import XmodalError
from xmodal.index._faiss import faiss

FORMAT_VERSION = 1


class IndexFileError(XmodalError):
    """A saved index that is missing, truncated, corrupt or written in an unknown format."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class Members:
    """Read access to the members of an open index file."""

    def __init__(self, zf: zipfile.ZipFile):
        self._zf = zf

    def array(self, name: str) -> np.ndarray:
        with self._zf.open(f"{name}.npy") as f:
            array = np.lib.format.read_array(f, allow_pickle=False)
            _read_to_end(f)
        return array

    def faiss_index(self, name: str):
        lib = faiss()
        with self._zf.open(f"{name}.faiss") as f:
            index = lib.read_index(lib.PyCallbackIOReader(f.read))
            _read_to_end(f)
        return index


def _read_to_end(f: IO[bytes]) -> None:
    # zipfile checks a member's CRC only once its last byte has been read.
    if f.read():
        raise ValueError("member has trailing bytes")


def write_file(path: Path, meta: dict[str, Any], members: dict[str, Any]) -> None:
    """Write meta (plus the format version) and members atomically: old file or new one."""
    with atomic_write(path) as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("meta.json", json.dumps({"format": FORMAT_VERSION, **meta}))
        for name, value in members.items():
            if isinstance(value, np.ndarray):
                with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, value, allow_pickle=False)
            else:
                lib = faiss()
                with zf.open(f"{name}.faiss", "w", force_zip64=True) as f:
                    lib.write_index(value, lib.PyCallbackIOWriter(f.write))


@contextmanager
def open_file(path: str | os.PathLike) -> Iterator[tuple[dict[str, Any], Members]]:
    """(meta, members) of a saved index; a file that can't be read raises IndexFileError."""
    try:
        with zipfile.ZipFile(path) as zf:
            meta = json.loads(zf.read("meta.json"))
            if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
                raise IndexFileError(path, "not an xmodal index file of a known format")
            yield meta, Members(zf)
    except FileNotFoundError as e:
        raise IndexFileError(path, "no such file") from e
    except (OSError, zipfile.BadZipFile, EOFError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise IndexFileError(path, f"truncated or corrupt ({e})") from e
