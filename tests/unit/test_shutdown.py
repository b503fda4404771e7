"""Stopping the API: no step of its shutdown may hold the process's exit for ever."""

from __future__ import annotations

import asyncio
import time

from engine.stopping import within


async def test_a_step_that_never_ends_is_given_up_after_its_time() -> None:
    started = time.monotonic()
    await within(asyncio.sleep(3600), 0.05)
    assert time.monotonic() - started < 1.0


async def test_a_task_that_swallows_its_cancellation_is_given_up_too() -> None:
    released = asyncio.Event()

    async def stubborn() -> None:
        while not released.is_set():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue  # ignores the stop until released

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    task.cancel()
    started = time.monotonic()
    await within(task, 0.05)
    assert time.monotonic() - started < 1.0
    released.set()  # let it end, so that the test's event loop can stop
    task.cancel()
    await asyncio.wait({task}, timeout=1.0)
    assert task.done()


async def test_a_failing_step_does_not_fail_the_stop() -> None:
    async def broken() -> None:
        raise ConnectionError("the broker is away")

    await within(broken(), 1.0)
