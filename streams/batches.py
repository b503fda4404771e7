"""Batches applied in the background while the next batch is read.

Why not faust's ``take_events``: it reads no new event while a batch is being handled,
and waits its full ``within`` for a batch to fill even when nothing else is coming. A
worker then alternates between Python (decode, build the writes) and waiting for Redis,
and an event waits for the batch timer. Here the agent keeps reading into ``pending``
while one background task applies the previous batch: the Python work of batch n+1
overlaps Redis's work on batch n. A batch goes out when it is full or ``linger_s`` after
its first event, whichever is first: without the linger the agent yields so often that
batches of 4-7 events went out, each paying a whole round trip.

The caller acknowledges events in ``handle``, after they are stored; ``put`` waits when
``max_pending`` items are queued, so a slow store slows the reading down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["BackgroundBatches"]

log = logging.getLogger("nba.worker")
T = TypeVar("T")


class BackgroundBatches(Generic[T]):
    """Queue items with :meth:`put`; one task hands them to ``handle`` in order, at most
    ``max_batch`` at a time, one batch at a time.

    >>> async def demo() -> list[list[int]]:
    ...     seen: list[list[int]] = []
    ...     async def handle(batch: list[int]) -> None:
    ...         seen.append(batch)
    ...     batches = BackgroundBatches(handle, max_batch=2)
    ...     for n in range(5):
    ...         await batches.put(n)
    ...     await batches.drain()
    ...     await batches.close()
    ...     return seen
    >>> asyncio.run(demo())
    [[0, 1], [2, 3], [4]]
    """

    def __init__(
        self,
        handle: Callable[[list[T]], Awaitable[object]],
        max_batch: int,
        linger_s: float = 0.0,
        max_pending: int | None = None,
    ) -> None:
        self.handle = handle
        self.max_batch = max_batch
        self.linger_s = linger_s
        self.max_pending = max_pending or 2 * max_batch
        self.pending: list[T] = []
        self._first_at = 0.0
        self._ready = asyncio.Event()
        self._full = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None

    async def put(self, item: T) -> None:
        """Queue ``item``; wait while the queue is full. Re-raises a failure of ``handle``."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="nba-batches")
        elif self._task.done():
            self._task.result()
            raise RuntimeError("the batch task stopped")
        if not self.pending:
            self._first_at = asyncio.get_running_loop().time()
        self.pending.append(item)
        self._idle.clear()
        self._ready.set()
        if len(self.pending) >= self.max_batch:
            self._full.set()
        while len(self.pending) >= self.max_pending:
            self._room.clear()
            await self._room.wait()

    async def drain(self) -> None:
        """Wait until every queued item has been handled."""
        await self._idle.wait()

    async def close(self) -> None:
        """Stop the task; items not yet handled are dropped (they were not acknowledged)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # logged in _run
                await self._task
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._ready.wait()
            wait = self._first_at + self.linger_s - loop.time()
            if wait > 0 and len(self.pending) < self.max_batch:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._full.wait()
            batch = self.pending[: self.max_batch]
            del self.pending[: self.max_batch]
            if not self.pending:
                self._ready.clear()
            else:
                self._first_at = loop.time()
            if len(self.pending) < self.max_batch:
                self._full.clear()
            self._room.set()
            try:
                await self.handle(batch)
            except Exception:
                log.exception("handling a batch of %d failed; the agent stops", len(batch))
                raise
            if not self.pending:
                self._idle.set()
