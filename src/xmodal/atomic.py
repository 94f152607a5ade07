"""Writing a file so that a crash leaves either the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def temp_name(path: Path) -> Path:
    """Where `path`'s next version is written: hidden, unique, `.NAME.*.tmp` beside it."""
    return path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")


@contextmanager
def atomic_write(
    path: str | os.PathLike, mode: str = "wb", *, fsync: bool = True, encoding: str | None = None
) -> Iterator[IO]:
    """A file object whose content replaces `path` when the block ends without an error.

    The temp file is created with the umask's permissions (like open()), in the target's
    folder (a rename across file systems is not atomic). fsync=False for caches, where a power
    cut may lose the new file but must not corrupt it.
    """
    path = Path(path)
    temp = temp_name(path)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, mode, encoding=encoding) as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def write_atomically(path: str | os.PathLike, data: bytes, *, fsync: bool = True) -> None:
    with atomic_write(path, "wb", fsync=fsync) as f:
        f.write(data)
