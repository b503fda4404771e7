"""Which CPUs the API and the background work run on, when one box runs them all.

On a box shared by the API, Redis, the stream worker, the broker (and, in a load test,
Locust), the kernel moves each process across all the cores. A decision then waits
whenever a background batch holds the core it last ran on, and starts again with caches
another process has cooled. Giving the API (and Redis, which every decision waits on)
CPUs of their own, and the background work the others, keeps both out of each other's
way: ``NBA_API_CPUS`` and ``NBA_BACKGROUND_CPUS``, in Linux's list form (``0``, ``0-3``,
``0,2-3``). Unset, a process may run anywhere.

Measured on a 2-vCPU box with ``nba loadtest --rate 1000 --duration 30 --workers 1``
(web only; Redis, broker, worker, API and Locust on the box), three pairs alternated,
``NBA_API_CPUS=0 NBA_BACKGROUND_CPUS=1`` against unset: server p99 4.7-4.8 ms against
7.9-13.5 ms, p50 0.78-1.03 ms against 1.02-1.68 ms (``benchmarks/results/20261125T0003…``
to ``T0008…``). Redis's own background work (its AOF rewrite's fork above all) goes to
the background's CPUs through Redis's ``*_cpulist`` settings: pinned beside the API, a
rewrite held it for 2.5 s, p99 46 ms and 348 fallbacks in that run. Where each service
has a machine or a cgroup of its own this changes nothing.

The price: the API gets only its CPUs, however busy the rest. Beyond what they can
serve it serves less: at 2,000/s with every caller (``--workers 2``), two pairs,
1,500 and 1,594 web decisions/s pinned against 2,023 and 1,880 unset, while the worker
kept up instead of falling 45,000 events behind. Pin for latency below that capacity.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["available_cpus", "cpus_of", "format_cpus", "parse_cpus", "pin_process"]

TASKS = Path("/proc/self/task")
ONLINE = Path("/sys/devices/system/cpu/online")
MAX_CPU = 4095


def parse_cpus(text: str) -> frozenset[int]:
    """A CPU list as Linux writes it (``0-2,5``); :class:`ValueError` says what is wrong."""
    cpus: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        low, dash, high = part.partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise ValueError(f"{part!r} is not a CPU number or a range such as 0-3")
        first, last = int(low), int(high) if dash else int(low)
        if first > last:
            raise ValueError(f"the range {part!r} runs backwards")
        if last > MAX_CPU:
            raise ValueError(f"CPU {last} is beyond {MAX_CPU}")
        cpus.update(range(first, last + 1))
    return frozenset(cpus)


def format_cpus(cpus: Iterable[int]) -> str:
    """The shortest list form of ``cpus``: runs of consecutive CPUs as ranges."""
    runs: list[list[int]] = []  # [first, last] of each run
    for cpu in sorted(set(cpus)):
        if runs and cpu == runs[-1][1] + 1:
            runs[-1][1] = cpu
        else:
            runs.append([cpu, cpu])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def available_cpus() -> frozenset[int]:
    """The CPUs of this machine, as the kernel lists them online. Not this process's own
    affinity: an API process pinned to its CPUs still reads, and checks, the background's."""
    try:
        return parse_cpus(ONLINE.read_text().strip())
    except (OSError, ValueError):
        return frozenset(range(os.cpu_count() or 1))


def cpus_of(text: str | None) -> frozenset[int] | None:
    """A configured list, or None when unset (run anywhere)."""
    return parse_cpus(text) if text else None


def pin_process(cpus: frozenset[int] | None) -> None:
    """Every thread of this process onto ``cpus`` (None: leave it); the threads and
    processes it starts later inherit them."""
    if not cpus:
        return
    threads = [int(t) for t in os.listdir(TASKS)] if TASKS.exists() else [0]
    for thread in threads:
        try:
            os.sched_setaffinity(thread, cpus)
        except ProcessLookupError:  # a thread that ended meanwhile
            continue
        except OSError as exc:  # a container's cpuset without them, say
            raise ValueError(f"cannot keep to CPUs {format_cpus(cpus)}: {exc.strerror}") from None
