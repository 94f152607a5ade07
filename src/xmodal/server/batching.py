"""Micro-batching: concurrent requests share one model call.

Requests that arrive while the model is busy, or within `max_wait` seconds of the first one
queued, are encoded together (up to `max_batch` items) and each request gets back its own rows.
On 2 CPU cores most of the gain comes from the queue that builds up while a batch runs, so
`max_wait` stays small: a lone request pays at most that much extra latency.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class _Request:
    items: Sequence[Any]
    future: asyncio.Future


class MicroBatcher:
    """Runs `encode(items) -> float32[len(items), d]` on `executor`, merging waiting requests.

    `observe(batch_items)` is called with each batch size (metrics). A failing batch of several
    requests is retried request by request, so one bad input fails only its own request.
    """

    def __init__(
        self,
        encode: Callable[[list[Any]], np.ndarray],
        executor: Executor,
        *,
        max_batch: int = 64,
        max_wait: float = 0.002,
        observe: Callable[[int], None] | None = None,
    ):
        if max_batch < 1 or max_wait < 0:
            raise ValueError("max_batch must be >= 1 and max_wait >= 0")
        self._encode = encode
        self._executor = executor
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._observe = observe or (lambda n: None)
        self._queue: asyncio.Queue[_Request] | None = None
        self._task: asyncio.Task | None = None
        self._current: list[_Request] = []  # the batch being gathered or served
        self._stopping = False

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._stopping = False
        self._spawn()

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._fail_waiting(RuntimeError("the server is shutting down"))

    async def submit(self, items: Sequence[Any]) -> np.ndarray:
        """The rows for `items`, in order, once their batch has run."""
        if self._queue is None or self._stopping:
            raise RuntimeError("MicroBatcher is not running: await start() first")
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Request(items, future))
        return await future

    def _spawn(self) -> None:
        self._task = asyncio.create_task(self._run())
        self._task.add_done_callback(self._supervise)

    def _supervise(self, task: asyncio.Task) -> None:
        """The dispatcher should only end by stop(). If it ended otherwise (a bug, or a task
        cancelled from outside), no request may wait for it forever: those it held and those
        queued fail with the reason, and a new dispatcher serves later requests."""
        if self._stopping or task is not self._task:
            return
        error = None if task.cancelled() else task.exception()
        reason = f"the model dispatcher stopped: {error or 'cancelled'}"
        for request in self._current:
            _settle(request.future, error=RuntimeError(reason))
        self._fail_waiting(RuntimeError(reason))
        self._spawn()

    def _fail_waiting(self, error: BaseException) -> None:
        while self._queue is not None and not self._queue.empty():
            _settle(self._queue.get_nowait().future, error=error)

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            self._current = []
            self._current.append(await self._queue.get())
            batch = self._current
            size = len(batch[0].items)
            deadline = loop.time() + self.max_wait
            while size < self.max_batch:
                try:
                    if self._queue.empty():
                        timeout = deadline - loop.time()
                        if timeout <= 0:
                            break
                        request = await asyncio.wait_for(self._queue.get(), timeout)
                    else:
                        request = self._queue.get_nowait()
                except TimeoutError:
                    break
                batch.append(request)
                size += len(request.items)
            batch = [r for r in batch if not r.future.done()]  # the client went away
            if batch:
                try:
                    await self._serve(loop, batch)
                except Exception as e:  # a failure outside the model call: fail this batch only
                    for request in batch:
                        _settle(request.future, error=e)

    async def _serve(self, loop: asyncio.AbstractEventLoop, batch: list[_Request]) -> None:
        items = [item for r in batch for item in r.items]
        try:
            rows = await loop.run_in_executor(self._executor, self._encode, items)
        except Exception as e:
            if len(batch) == 1:
                _settle(batch[0].future, error=e)
            else:
                for request in batch:
                    await self._serve(loop, [request])
            return
        self._observe(len(items))
        start = 0
        for request in batch:
            _settle(request.future, rows[start : start + len(request.items)])
            start += len(request.items)


def _settle(future: asyncio.Future, result: Any = None, error: BaseException | None = None):
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
