"""Keeping what the API built at start out of the cyclic garbage collector's way.

A full collection walks every object the collector tracks, and an API process holds many
that live as long as it does: the framework, the libraries, the catalogue and its
compiled rules. Under load one came about once a minute and stopped the process for
27–36 ms, which every request in flight waited for (timed with ``gc.callbacks`` in the
API during ``nba loadtest --rate 1000 --duration 30 --workers 1``). Frozen at the end of
start-up (:func:`gc.freeze`), before the first request, they are left out of every
collection, so a full one walks only what came later: 4–8 ms in the same kind of run
(94,500 objects frozen; full collections forced every 10 s by a scratch timer, not kept).

The freeze has a price in full collections: CPython starts one when the objects promoted
since the last reach a quarter of the old generation, and with start-up frozen that
generation is small. A batch of 1,000 e-mail decisions promotes its requests, records
and answers, so full collections came every third batch, 18-27 ms each and 3-4% of the
API's CPU (``gc.callbacks`` in the API, 15 batches of
``benchmarks/test_bench_batch.py``'s kind, scratch). So after the freeze a full
collection also waits for :data:`MIDDLE_PER_FULL` middle collections instead of
CPython's 10: none came in the same 15 batches, and cyclic garbage still goes, later.
Three alternated pairs of that benchmark, whose API CPU per decision varies by a third
from run to run here, could not show the 3-4% (see benchmarks/JOURNAL.md, 7 December).

Only at start: collecting before a freeze is itself a full collection, and done again at
each change of catalogue or model it stalled decisions past their latency budget (the
Redis-outage reliability test caught fallbacks on a healthy store). The price of freezing
once: if the state built at start is replaced and was held in cycles, it is never freed;
one catalogue's worth, once.
"""

from __future__ import annotations

import gc

__all__ = ["MIDDLE_PER_FULL", "collect_and_freeze", "freeze_start_up", "space_full_collections"]

MIDDLE_PER_FULL = 100  # middle collections before a full one may come (CPython: 10)


def collect_and_freeze() -> int:
    """A full collection, then everything that survived it frozen; how many unreachable
    objects it found."""
    found = gc.collect()
    gc.freeze()
    return found


async def freeze_start_up() -> None:
    """Collect what start-up left behind, freeze everything that survived, and space the
    full collections out."""
    collect_and_freeze()
    space_full_collections(MIDDLE_PER_FULL)


def space_full_collections(middle_per_full: int) -> None:
    """Let a full collection come only after ``middle_per_full`` middle ones (CPython's
    third threshold), the young and middle thresholds as they are."""
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, middle_per_full)
