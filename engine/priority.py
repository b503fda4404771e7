"""Background work gives way to decisions on a shared machine.

The stream worker and the embedded broker do throughput work: a decision logged or
learned from a few seconds later harms no one, while a decision waits on every
millisecond. When everything on one box is runnable the kernel shares the cores fairly,
and a decision then waits behind a worker's batch. A higher nice value for the
background processes lets the API go first; they still get every cycle it leaves.

What it buys and costs, measured on a 2-vCPU box with ``nba loadtest --workers 2`` (web,
desk, e-mail and responses; Redis, broker, worker, API and Locust all on the box), two
pairs alternated at nice 0 and 10 (``benchmarks/results/20261124T2138…``–``T2141…``):

- at 2,000 web decisions/s offered, beyond what the box can do, 1,753 and 1,861 served
  at 10 against 1,288 and 1,341 at 0, client p99 100-102 ms against 142 ms, and 8-11%
  of them fallbacks (default actions, decided without the customer's features or contact
  counters) against 19-22%;
- the price: the worker fell behind, 46,000-55,000 events when the load stopped (the
  decision log, which it learns from, and 1,400-2,000 responses, which feed the
  contact policies' decline and impression counters; CRM and clickstream none), and
  caught up 8-11 s later. At nice 0 it kept up;
- at 1,000/s, with CPU to spare, neither side was better (two pairs, web only).

Linux puts each session in its own *autogroup* and shares the CPU fairly between
groups, so a nice value counts only against processes of the same session. A process
that leads a session of its own (the embedded broker does) lowers its group's priority
as well.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["lower_priority"]

AUTOGROUP = Path("/proc/self/autogroup")


def lower_priority(increment: int) -> None:
    """Raise this process's nice value by ``increment`` (0: leave it), and its session
    group's when it leads its session. Unprivileged: only ever lowers the priority."""
    if increment <= 0:
        return
    os.nice(increment)
    if os.getsid(0) == os.getpid():
        with contextlib.suppress(OSError):  # no autogroups on this kernel
            AUTOGROUP.write_text(f"{min(19, increment)}\n")
