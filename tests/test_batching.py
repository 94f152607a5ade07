"""MicroBatcher: concurrent requests merged into model calls, rows routed back, failures
isolated to their own request."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from xmodal.server.batching import MicroBatcher


class Model:
    """Squares numbers, slowly; records each call's batch; refuses negative inputs."""

    def __init__(self, delay=0.02):
        self.calls: list[list[int]] = []
        self.delay = delay
        self.threads: set[str] = set()

    def __call__(self, items):
        if any(x < 0 for x in items):
            raise ValueError("negative input")
        self.calls.append(list(items))
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay)
        return np.array([[x, x * x] for x in items], dtype=np.float32)


def run(coro):
    return asyncio.run(coro)


async def with_batcher(model, body, **kwargs):
    with ThreadPoolExecutor(1, thread_name_prefix="model") as pool:
        batcher = MicroBatcher(model, pool, **kwargs)
        await batcher.start()
        try:
            return await body(batcher)
        finally:
            await batcher.stop()


def test_concurrent_requests_share_calls_and_get_their_own_rows():
    model = Model()

    async def body(b):
        return await asyncio.gather(*(b.submit([i, i + 100]) for i in range(20)))

    results = run(with_batcher(model, body, max_batch=64, max_wait=0.01))
    for i, rows in enumerate(results):
        np.testing.assert_array_equal(rows[:, 0], [i, i + 100])
        np.testing.assert_array_equal(rows[:, 1], [i * i, (i + 100) ** 2])
    assert len(model.calls) < 20
    assert sum(len(c) for c in model.calls) == 40
    assert model.threads == {"model_0"}


def test_max_batch_bounds_merging():
    model = Model()

    async def body(b):
        return await asyncio.gather(*(b.submit([i]) for i in range(10)))

    run(with_batcher(model, body, max_batch=3, max_wait=0.05))
    assert max(len(c) for c in model.calls) == 3


def test_requests_queued_while_busy_form_the_next_batch():
    model = Model(delay=0.1)

    async def body(b):
        first = asyncio.create_task(b.submit([1]))
        await asyncio.sleep(0.03)  # the first call is running now
        rest = [asyncio.create_task(b.submit([i])) for i in range(2, 8)]
        return await asyncio.gather(first, *rest)

    run(with_batcher(model, body, max_batch=64, max_wait=0))
    assert model.calls == [[1], [2, 3, 4, 5, 6, 7]]


def test_a_bad_request_fails_alone():
    model = Model()

    async def body(b):
        return await asyncio.gather(
            b.submit([1]), b.submit([-1]), b.submit([3]), return_exceptions=True
        )

    good1, bad, good3 = run(with_batcher(model, body, max_wait=0.02))
    assert isinstance(bad, ValueError)
    assert good1[0, 1] == 1 and good3[0, 1] == 9


def test_a_cancelled_request_does_not_disturb_others():
    model = Model(delay=0.05)

    async def body(b):
        gone = asyncio.create_task(b.submit([5]))
        kept = asyncio.create_task(b.submit([6]))
        await asyncio.sleep(0)
        gone.cancel()
        return await kept

    rows = run(with_batcher(model, body, max_wait=0.01))
    assert rows[0, 1] == 36


def test_bad_settings():
    with pytest.raises(ValueError):
        MicroBatcher(Model(), ThreadPoolExecutor(1), max_batch=0)
