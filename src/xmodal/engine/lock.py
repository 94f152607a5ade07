"""One writer per collection across processes: an OS file lock on `write.lock` in its folder.

fcntl.flock (POSIX: Linux, macOS) is released by the OS when the holder dies, so a killed
`xmodal index` never leaves a collection locked. Windows would need msvcrt.locking instead;
xmodal does not run there today. The holder writes its PID into the file so a refused writer
can say who holds it.

Within a process the lock is reentrant for the thread holding it (a write inside index() must
not deadlock on itself); other threads of the process wait like other processes do.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from xmodal.errors import CatalogError, CollectionBusyError

LOCK_FILE = "write.lock"
_POLL_SECONDS = 0.05  # how often a waiting writer retries: short next to any write


class WriterLock:
    def __init__(self, folder: Path):
        self.path = folder / LOCK_FILE
        self._mutex = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this process holds the lock (from any thread)."""
        return self._depth > 0

    @contextmanager
    def hold(
        self,
        *,
        wait: bool = True,
        timeout: float | None = None,
        on_wait: Callable[[], None] | None = None,
    ) -> Iterator[None]:
        """Hold the lock for the block. Busy and wait=False, or still busy after `timeout`
        seconds: CollectionBusyError. on_wait() is called once, before waiting."""
        deadline = None if timeout is None else time.monotonic() + timeout
        waited = False

        def busy() -> None:
            nonlocal waited
            if not wait or (deadline is not None and time.monotonic() >= deadline):
                raise CollectionBusyError(self._busy_message())
            if not waited and on_wait is not None:
                on_wait()
            waited = True
            time.sleep(_POLL_SECONDS)

        while not self._mutex.acquire(blocking=False):
            busy()
        try:
            if self._depth == 0:
                fd = self._open()
                try:
                    while not _try_flock(fd):
                        busy()
                except BaseException:
                    os.close(fd)
                    raise
                self._fd = fd
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self._release()
        finally:
            self._mutex.release()

    def holder(self) -> int | None:
        """The PID recorded by the process holding the lock, if any."""
        try:
            text = self.path.read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def _busy_message(self) -> str:
        pid = self.holder()
        who = f"process {pid}" if pid else "another process"
        return (
            f"{self.path.parent} is being written by {who} (an `xmodal index` run?): "
            "try again when it has finished, or wait for it (xmodal index --wait)"
        )

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise CatalogError(
                f"{self.path}: cannot open the collection's lock file ({e.strerror or e}): "
                "is the folder read-only?"
            ) from e

    def _release(self) -> None:
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # no stale PID for the next refused writer to name
        os.close(fd)  # closing the descriptor releases the flock


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
