"""Two versions of the code under the same load test, in alternated pairs, for changes
smaller than this machine's drift over HTTP.

Two runs of one commit a few minutes apart have differed here by a third at server p50,
so a load test is only compared with one of the other code run beside it. This runs
``nba loadtest`` with the given arguments from each source tree in turn, in pairs whose
order alternates (old then new, new then old, ...), on the new tree's data folder (one
demo store for both), and prints each pair's figures and the median of their paired
ratios, new over old. The old tree's result files are renamed ``…-base-<commit>`` so
that both sides' files can be kept in ``benchmarks/results``.

``python -m benchmarks.alternate_load OLD_TREE NEW_TREE [--pairs 5] -- LOADTEST ARGS``,
for example, after ``git worktree add /tmp/old 34aaf9e``, #4 of the README:
``NBA_API_CPUS=0 NBA_BACKGROUND_CPUS=1 .venv/bin/python -m benchmarks.alternate_load
/tmp/old . --pairs 5 -- --rate 1000 --duration 30 --workers 1 --caller desk=0 --caller
email=0 --caller responses=0``. The same tree twice measures the noise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

FIGURES = {  # name: where it is in a result file
    "server p50 ms": ("server", "decision_latency", "all", "p50_ms"),
    "server p99 ms": ("server", "decision_latency", "all", "p99_ms"),
    "web p50 ms": ("client", "classes", "web", "p50_ms"),
    "web p99 ms": ("client", "classes", "web", "p99_ms"),
    "web decisions/s": ("client", "classes", "web", "achieved_rate"),
    "api cpu %": ("cpu", "per_process", "api"),
}
_WROTE = re.compile(r"wrote (\S+\.json)")


def figures(result: dict[str, Any]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name, path in FIGURES.items():
        value: Any = result
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        out[name] = float(value) if isinstance(value, int | float) else None
    return out


def run(tree: Path, data: Path, results: Path, args: list[str]) -> Path:
    """One load test from ``tree``; the path of the result file it wrote."""
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "NBA_DATA_DIR": os.environ.get("NBA_DATA_DIR", str(data / "var")),
        "NBA_MODEL_DIR": os.environ.get("NBA_MODEL_DIR", str(data / "var" / "models")),
    }
    command = [sys.executable, "-m", "nba.cli", "loadtest", *args, "--out", str(results)]
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, check=False)
    found = _WROTE.search(done.stdout)
    if found is None:  # a run with failed requests exits non-zero, but still reports
        raise RuntimeError(f"the load test from {tree} failed:\n{done.stdout}\n{done.stderr}")
    if done.returncode != 0:
        print(f"the load test from {tree} exited with {done.returncode}", flush=True)
    written = Path(found.group(1))
    return written if written.is_absolute() else results / written.name


def as_base(path: Path, commit: str) -> Path:
    """Rename a result's files (JSON and plot) to ``…-base-<commit>``."""
    renamed = path
    for suffix in (".json", ".png"):
        old = path.with_suffix(suffix)
        new = old.with_name(f"{old.stem}-base-{commit[:7]}{suffix}")
        if old.exists():
            old.rename(new)
        if suffix == ".json":
            renamed = new
    return renamed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--pairs", type=int, default=5)
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:cut])  # after "--": the load test's own arguments
    old, new = Path(args.old).resolve(), Path(args.new).resolve()
    passed = argv[cut + 1 :]
    results = new / "benchmarks" / "results"
    pairs: list[dict[str, dict[str, float | None]]] = []
    for pair in range(args.pairs):
        sides: dict[str, dict[str, float | None]] = {}
        for side in ("old", "new") if pair % 2 == 0 else ("new", "old"):
            path = run(old if side == "old" else new, new, results, passed)
            result = json.loads(path.read_text())
            if side == "old" and old != new:  # the commit the load test itself recorded
                path = as_base(path, result.get("code", {}).get("commit") or "unknown")
            sides[side] = figures(result)
            print(f"pair {pair + 1} {side}: {path.name} {sides[side]}", flush=True)
        pairs.append(sides)
    for name in FIGURES:
        ratios = [
            n / o
            for p in pairs
            if (o := p["old"][name]) is not None and (n := p["new"][name]) is not None and o
        ]
        olds = [p["old"][name] for p in pairs]
        news = [p["new"][name] for p in pairs]
        ratio = f"{statistics.median(ratios):.3f}" if ratios else "n/a"
        print(f"{name}: old {olds}, new {news}; new/old paired median {ratio}")


if __name__ == "__main__":
    main()
