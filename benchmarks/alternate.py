"""Two versions of the code side by side: the demo world's web decision in process, in
blocks that take turns, for changes smaller than this machine's drift.

On a shared 2-vCPU machine the same code measures a third slower from one minute to the
next, so two runs one after the other cannot tell a 5% change. Here two processes, one
per source tree, each pinned to the same CPU, decide blocks of 150 demo-world web
decisions in turn (``decide_many`` of one, its log record built as the API builds it,
the heap frozen after start-up as the API freezes it), warm or after touching 48 MB
before each decision (cold). Each round pairs the two block medians of CPU time; the
figure is the median of their ratios, new over old.

``python -m benchmarks.alternate OLD_TREE NEW_TREE [--rounds 30] [--cpu 1]``, for
example after ``git worktree add /tmp/old a61304f``:
``.venv/bin/python -m benchmarks.alternate /tmp/old . --rounds 30``. The same tree
twice measures the noise.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import subprocess
import sys
import time
from pathlib import Path

BLOCK = 150
KINDS = ("warm", "cold")


def child(tree: str) -> None:
    """One side: decide a block on each line read (``warm`` or ``cold``), print its
    median CPU time in µs."""
    sys.path.insert(0, tree)  # the tree's own engine and benchmark world
    import numpy as np

    from benchmarks.test_bench_warmth import _world_decisions

    async def run() -> None:
        decider, requests = await _world_decisions()
        for request in requests[:500]:
            await decider.decide_many([request])
        junk = np.ones(6_000_000)  # 48 MB, beyond the caches
        gc.collect()
        gc.freeze()
        print("ready", flush=True)
        at = 0
        for line in sys.stdin:
            cold = line.strip() == "cold"
            times = []
            for _ in range(BLOCK):
                request = requests[at % len(requests)]
                at += 1
                if cold:
                    np.multiply(junk, 1.0000001, out=junk)
                started = time.process_time()
                await decider.decide_many([request])
                # its log record, built two turns of the loop later by both an older
                # tree's Decider._log_later and engine.log_scheduling: not records_built,
                # whose signature the older trees do not share
                await asyncio.sleep(0)
                await asyncio.sleep(0)
                times.append(time.process_time() - started)
            print(statistics.median(times) * 1e6, flush=True)

    asyncio.run(run())


def alternate(old: str, new: str, rounds: int, cpu: int) -> dict[str, dict[str, float]]:
    sides = {}
    for name, tree in (("old", old), ("new", new)):
        command = ["taskset", "-c", str(cpu), sys.executable, __file__, "--child", tree]
        sides[name] = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
    blocks: dict[tuple[str, str], list[float]] = {(n, k): [] for n in sides for k in KINDS}
    try:
        for side in sides.values():
            assert side.stdout is not None and side.stdout.readline().strip() == "ready"
        for turn in range(rounds):
            order = ["old", "new"] if turn % 2 == 0 else ["new", "old"]
            for kind in KINDS:
                for name in order:
                    side = sides[name]
                    assert side.stdin is not None and side.stdout is not None
                    side.stdin.write(kind + "\n")
                    side.stdin.flush()
                    blocks[(name, kind)].append(float(side.stdout.readline()))
    finally:
        for side in sides.values():
            if side.stdin is not None:
                side.stdin.close()
            side.wait(60)
    out = {}
    for kind in KINDS:
        olds, news = blocks[("old", kind)], blocks[("new", kind)]
        out[kind] = {
            "old_median_us": statistics.median(olds),
            "new_median_us": statistics.median(news),
            "new_over_old": statistics.median(n / o for o, n in zip(olds, news, strict=True)),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old", nargs="?")
    parser.add_argument("new", nargs="?")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--cpu", type=int, default=1)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    if not args.old or not args.new:
        parser.error("name the old and the new source tree")
    old, new = (str(Path(tree).resolve()) for tree in (args.old, args.new))
    for kind, figures in alternate(old, new, args.rounds, args.cpu).items():
        print(
            f"{kind}: old {figures['old_median_us']:.1f} µs, new {figures['new_median_us']:.1f}"
            f" µs, new/old paired median {figures['new_over_old']:.3f}"
            f" ({args.rounds} rounds of {BLOCK} decisions)"
        )


if __name__ == "__main__":
    main()
