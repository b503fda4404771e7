"""Instructions (and, optionally, simulated cache misses) per decision, counted by valgrind.

Timings on these shared 2-vCPU machines move by a third from one minute to the next, so
a change of a few percent cannot be seen in one run, and only barely in alternated pairs
(``benchmarks.alternate``). An instruction count does not move with the machine: one
command counts the same tree to 0.005%, and two trees with the same decision code to
within half a percent (the heap's addresses differ). Instructions are not time (a cache
miss costs hundreds of them), so ``--cache`` also simulates one core's caches (32 KiB L1
data, and 1 MiB L2 as the last level, this AMD EPYC's per-core sizes) and counts their
misses; with ``--cold`` 4 MiB are touched before each decision (not counted), as the
other processes on the API's core evict its caches between two page views. Cold misses
of the last level are then the lines a decision brings in from memory: its working set.

What runs is ``benchmarks.alternate``'s block: the demo world's web decisions in process,
``decide_many`` of one, its log record built two turns of the loop later, the heap frozen
after warm-up as the API freezes it. Valgrind hides AVX-512 from the program, so numpy,
ONNX Runtime and the compiled kernels take their AVX2 paths here.

``python -m benchmarks.instructions [TREE] [--against OLD_TREE] [--decisions 400] [--cache]
[--cold] [--model-alone] [--keep FILE]`` writes
``benchmarks/results/<time>-instructions.json``: per decision, the totals, each shared
object's own share (the interpreter, numpy, the compiled kernels, ...) and the costliest
functions; with ``--against`` (after ``git worktree add /tmp/old SHA``), the older tree's
too, and the change, event by event and by shared object.
Needs valgrind and gcc (for a two-line helper that switches counting on and off); about
1.5 minutes a tree, 3 with the caches.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

WARM_UP = 300
CACHES = ["--cache-sim=yes", "--D1=32768,8,64", "--I1=32768,8,64", "--LL=1048576,8,64"]


def child(tree: str, decisions: int, cold: bool, adaptive: bool) -> None:
    """Inside valgrind: warm up uncounted, then count only the decisions."""
    # run as a script, this file's folder comes first: the switch from here, the rest
    # from the tree, whose own ``benchmarks`` may be older than this file
    from callgrind_costs import switch

    counting = switch()
    sys.path.insert(0, tree)
    import asyncio
    import gc

    import numpy as np

    from benchmarks.test_bench_warmth import _world_decisions

    async def run() -> None:
        decider, requests = await _world_decisions(adaptive)
        counted = [requests[at % len(requests)] for at in range(decisions)]

        async def decide(request: Any) -> None:
            await decider.decide_many([request])
            await asyncio.sleep(0)  # its log record is built two turns later
            await asyncio.sleep(0)

        # every request counted is decided once before, so that nothing counted is a
        # first time (numba loads a kernel's machine code on its first call)
        for request in requests[-WARM_UP:] + counted:
            await decide(request)
        counting.instrument()
        for request in requests[-50:]:  # the simulated caches fill
            await decide(request)
        gc.collect()
        gc.freeze()
        junk = np.ones(1 << 19)  # 4 MiB, four times the simulated last level
        for request in counted:
            if cold:
                np.multiply(junk, 1.0000001, out=junk)
            counting.toggle()
            await decide(request)
            counting.toggle()

    asyncio.run(run())


def _commit(tree: Path) -> str:
    done = subprocess.run(
        ["git", "-C", str(tree), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
    )
    return done.stdout.strip() or "unknown"


def count(
    tree: Path,
    decisions: int,
    cache: bool,
    cold: bool,
    adaptive: bool = True,
    keep: Path | None = None,
) -> dict[str, Any]:
    """Run the decisions under callgrind; their costs per decision."""
    from benchmarks.callgrind_costs import counted_run, per_unit

    program = [__file__, str(tree), "--child", "--decisions", str(decisions)]
    program += (["--cold"] if cold else []) + ([] if adaptive else ["--model-alone"])
    costs = counted_run(program, CACHES if cache else (), keep)
    figures: dict[str, Any] = {
        "tree": str(tree),
        "commit": _commit(tree),
        "decisions": decisions,
        "cold": cold,
        "adaptive": adaptive,
        "caches": CACHES[1:] if cache else None,
    }
    return figures | per_unit(costs, decisions)


def compared(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Lines of a comparison: each event's count per decision, old, new and their ratio,
    then the instructions' change by shared object, largest first."""
    lines = []
    for event, before in old["per_decision"].items():
        after = new["per_decision"][event]
        lines.append(f"{event}: {before:,.0f} -> {after:,.0f} ({after / before:.4f})")
    objects_old, objects_new = old["Ir"]["by_object"], new["Ir"]["by_object"]
    change = {
        k: objects_new.get(k, 0.0) - objects_old.get(k, 0.0) for k in {**objects_old, **objects_new}
    }
    for label, delta in sorted(change.items(), key=lambda item: -abs(item[1]))[:8]:
        lines.append(f"  {label}: {delta:+,.0f} instructions a decision")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tree", nargs="?", default=".")
    parser.add_argument("--against", type=Path, help="an older tree, counted too and compared")
    parser.add_argument("--decisions", type=int, default=400)
    parser.add_argument("--cache", action="store_true", help="simulate the caches")
    parser.add_argument("--cold", action="store_true", help="evict them before each decision")
    parser.add_argument(
        "--model-alone", action="store_true", help="without the adaptive layer (NBA_ADAPTIVE=off)"
    )
    parser.add_argument(
        "--keep", type=Path, help="copy callgrind's output here, for callgrind_annotate"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    tree = Path(args.tree).resolve()
    if args.child:
        child(str(tree), args.decisions, args.cold, not args.model_alone)
        return
    cache, adaptive = args.cache or args.cold, not args.model_alone
    figures = count(tree, args.decisions, cache, args.cold, adaptive, args.keep)
    out: dict[str, Any] = figures
    if args.against is not None:
        old = count(args.against.resolve(), args.decisions, cache, args.cold, adaptive)
        out = {"old": old, "new": figures}
        print(f"{old['commit']} -> {figures['commit']}, per decision:")
        print("\n".join(compared(old, figures)))
    from benchmarks.callgrind_costs import each_event, written

    path = written(out, "instructions")
    print(f"{figures['commit']}: per decision {each_event(figures['per_decision'])}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
