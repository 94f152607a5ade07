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


def test_a_killed_dispatcher_fails_its_requests_and_is_replaced():
    model = Model(delay=0.2)

    async def body(b):
        running = asyncio.create_task(b.submit([1]))
        await asyncio.sleep(0.05)  # [1] is in the model now
        queued = asyncio.create_task(b.submit([2]))
        await asyncio.sleep(0)
        b._task.cancel()  # what a bug in the dispatcher would do: it is gone
        done = await asyncio.wait_for(asyncio.gather(running, queued, return_exceptions=True), 5)
        return done, await asyncio.wait_for(b.submit([3]), 5)

    (running, queued), later = run(with_batcher(model, body, max_wait=0))
    for error in (running, queued):
        assert isinstance(error, RuntimeError) and "dispatcher stopped" in str(error)
    assert later[0, 1] == 9


def test_a_failure_outside_the_model_fails_that_batch_only():
    model = Model()
    observed = []

    def observe(n):
        observed.append(n)
        if len(observed) == 1:
            raise RuntimeError("metrics are broken")

    async def body(b):
        first = await asyncio.gather(b.submit([1]), return_exceptions=True)
        return first, await asyncio.wait_for(b.submit([2]), 5)

    (first,), second = run(with_batcher(model, body, max_wait=0, observe=observe))
    assert isinstance(first, RuntimeError) and "metrics" in str(first)
    assert second[0, 1] == 4


def test_lone_requests_after_waiting_alone_are_served():
    # A lone request waits max_wait for company, then the wait times out: on every Python the
    # timeout ends the wait, and the dispatcher keeps serving (it once died of it on 3.10).
    model = Model(delay=0)

    async def body(b):
        return [await asyncio.wait_for(b.submit([i]), 5) for i in range(5)]

    rows = run(with_batcher(model, body, max_wait=0.01))
    assert [r[0, 1] for r in rows] == [0, 1, 4, 9, 16]
    assert model.calls == [[0], [1], [2], [3], [4]]


def test_submit_after_stop_is_an_error():
    async def body():
        with ThreadPoolExecutor(1) as pool:
            b = MicroBatcher(Model(), pool)
            await b.start()
            await b.stop()
            with pytest.raises(RuntimeError, match="not running"):
                await b.submit([1])

    run(body())
