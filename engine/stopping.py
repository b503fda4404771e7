"""Stopping: background loops that stop when asked, whatever their libraries do with the
request, and shutdown steps that may not hold a process's exit for ever."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

__all__ = ["SHUTDOWN_STEP_S", "stop_requested", "within"]

log = logging.getLogger("nba.api")
SHUTDOWN_STEP_S = 5.0  # the longest one step of stopping may take


def stop_requested() -> bool:
    """The running task has been cancelled, even if no CancelledError reached its code.

    A library may consume the cancellation of a call: turn it into an error of its own,
    or reconnect and answer. A catalogue watch around a Redis call then went back to
    sleep with the request to stop used up, and its API process waited for it at stops
    (one run in a few of a test that starts and stops an API). A loop that calls such a
    library asks this before it goes round again.
    """
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def within(step: Awaitable[Any], seconds: float) -> None:
    """Wait for one step of stopping for at most ``seconds``; its failure is not the stop's.

    A loop that missed its cancellation (see :func:`stop_requested`) kept an API process
    up after SIGTERM, its port closed; a step given up on is logged, which is how that
    loop was found. ``asyncio.wait``, not a timeout around ``await``: cancelling the wait
    of a task that swallows its cancellation would wait for that task all the same.
    """
    future = asyncio.ensure_future(step)
    done, _ = await asyncio.wait({future}, timeout=seconds)
    if not done:
        log.warning("stopping: %r did not finish in %.0f s; going on without it", step, seconds)
        future.cancel()
        return
    if not future.cancelled():
        future.exception()  # retrieved, so that asyncio does not report it as lost
