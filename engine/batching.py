"""Decisions that arrive together are decided together.

Under load an API process is busy with one decision while more requests wait in their
sockets; the event loop then takes them up in the same turn. Deciding each alone pays,
per decision, the fixed costs of a store round trip, an ONNX call and a dozen numpy
calls, and runs with caches that the other processes on the machine have cooled. Decided
as one batch (:meth:`engine.decisions.Decider.decide_many`) they share one round trip
and one model call, and all but the first run warm: on the demo world, with the caches
cooled before each batch, 641 µs per decision alone, 439 in twos, 323 in fours (median,
benchmarks/test_bench_warmth.py).

The first request of a turn leads: it yields the loop once, so that requests whose
turn has already begun can join, then decides for all of them. A request alone (light
load) waits one extra turn of the loop, a few µs. A batch is bounded, and each request
keeps its own answer or its own error. Only requests with the same budget (their
channel's, see :meth:`engine.decisions.Decider.budget_for`) share a batch: a page view
must not wait as long as an agent's desk may.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from engine.decisions import BatchTimes, Decider
from engine.errors import BadRequest
from engine.selection import DecisionInput

__all__ = ["DecisionBatcher"]

MAX_BATCH = 64


class DecisionBatcher:
    """``timed``: told where each batch's time went (the API's metrics)."""

    def __init__(
        self,
        decider: Decider,
        max_batch: int = MAX_BATCH,
        timed: Callable[[BatchTimes], None] | None = None,
    ) -> None:
        self.decider = decider
        self.max_batch = max_batch
        self.timed = timed
        self._joining: dict[float, list[tuple[DecisionInput, asyncio.Future[dict[str, Any]]]]] = {}
        self.batches = 0  # for tests and figures
        self.decisions = 0

    async def decide(self, request: DecisionInput) -> dict[str, Any]:
        """The answer to ``request``, raised :class:`BadRequest` included."""
        budget = self.decider.budget_for(request.channel)
        joining = self._joining.get(budget)
        if joining is not None and len(joining) < self.max_batch - 1:
            future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            joining.append((request, future))
            return await future
        with self.decider.logs.deciding():  # records wait while the batch forms
            return await self._lead(request, budget)

    async def _lead(self, request: DecisionInput, budget: float) -> dict[str, Any]:
        own: list[tuple[DecisionInput, asyncio.Future[dict[str, Any]]]] = []
        self._joining[budget] = own
        times = None if self.timed is None else BatchTimes()
        forming_from = time.perf_counter()
        try:
            try:
                await asyncio.sleep(0)  # requests already under way this turn join
            finally:
                if self._joining.get(budget) is own:
                    del self._joining[budget]
            if times is not None:
                times.forming = time.perf_counter() - forming_from
            results = await self.decider.decide_many(
                [request, *(r for r, _ in own)], budget, times=times
            )
        except BaseException as exc:
            failure = exc if isinstance(exc, Exception) else RuntimeError("decision cancelled")
            for _, future in own:
                if not future.done():
                    future.set_exception(failure)
            raise
        self.batches += 1
        self.decisions += len(results)
        for (_, future), result in zip(own, results[1:], strict=True):
            if future.done():  # its caller went away
                continue
            if isinstance(result, BadRequest):
                future.set_exception(result)
            else:
                future.set_result(result)
        if times is not None and self.timed is not None:  # after the batch's answers
            self.timed(times)
        first = results[0]
        if isinstance(first, BadRequest):
            raise first
        return first
