"""Background loops that stop when asked, whatever their libraries do with the request."""

from __future__ import annotations

import asyncio

__all__ = ["stop_requested"]


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
