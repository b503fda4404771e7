"""The stream worker's full garbage collections: on a timer, not by allocation counts.

The adaptive learner keeps every shown action of its label window (10 s: at 3,000
decisions/s some 90,000 entries, with their views), so the heap the cyclic collector
tracks is large, and it turns over as fast as the decision log flows. CPython starts a
full collection whenever the objects that survived the young collections reach a
quarter of the old generation; at the worker's rate that came about once per second of
work, each walking the whole window. In
``benchmarks/test_bench_streams.py::test_worker_cpu_per_decision_record`` (timed with
``gc.callbacks``, scratch), 12 and 13 full collections took 2.05 and 2.04 s of the
worker's 10.3–10.6 s of CPU.

So the worker switches automatic full collections off and runs one every
:data:`FULL_EVERY_S` instead; the young and middle collections stay as CPython sets them
(0.4 s in that run). Objects freed by their reference counts, which is nearly all of the
window, go at once as before; only garbage in cycles waits for the timer. The first timed
collection also freezes what survived it (:func:`gc.freeze`): the libraries, faust's
services, the compiled kernels, which every later one then skips, as the API does at
start (:mod:`engine.heap`).
"""

from __future__ import annotations

import gc

from engine.heap import collect_and_freeze, space_full_collections

__all__ = ["FULL_EVERY_S", "TimedCollections"]

FULL_EVERY_S = 30.0
_NEVER = 1 << 30  # a middle-collection count CPython never reaches: no automatic full one


class TimedCollections:
    """:meth:`take_over` when the process starts; :meth:`collect` every
    :data:`FULL_EVERY_S`."""

    def __init__(self) -> None:
        self.frozen = False

    def take_over(self) -> None:
        space_full_collections(_NEVER)

    def collect(self) -> int:
        """A full collection; the first also freezes what survives it. How many
        unreachable objects it found."""
        if self.frozen:
            return gc.collect()
        self.frozen = True
        return collect_and_freeze()
