"""Instructions per web decision in the API process itself, counted by valgrind.

``benchmarks.instructions`` counts a decision in process. Over HTTP the API also parses
the request, checks its key, batches, reads Redis, times and counts it for ``/metrics``,
answers, and produces the decision log's record to Kafka. Here the whole stack starts as
``nba loadtest`` starts it (Redis, the broker, the worker; the demo world seeded and a
model registered if the data folder has none), with the API under callgrind, and the
demo world's web requests are sent one at a time, each waiting for its answer, so that
every batch holds one decision, as in process. The requests counted are sent once before,
uncounted, then instrumentation starts, 100 more warm the simulated state, the counts
are zeroed, and the counted requests are sent again. The feature read's budget is raised
to 5 s: under valgrind the API runs some fifty times slower, and a read past the budget
would answer from the fallback path instead.

Counts in the API depend a little on timing (how often the read spins before Redis
answers, when the producer sends a batch): three runs gave 2,110,331 to 2,117,276
instructions a request, 0.3% apart.

``python -m benchmarks.api_instructions [--requests 400]`` writes
``benchmarks/results/<time>-api-instructions.json``, shaped as
``benchmarks.instructions`` writes its file. Needs valgrind and gcc; about a minute
once the demo world is in the data folder.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import httpx

from benchmarks.callgrind_costs import each_event, per_unit, self_costs, written

WARM_UP = 300
SETTLE = 100  # instrumented but not counted: the simulated state and the code translated
BUDGET_MS = "5000"


def web_requests(count: int, customers: int) -> list[dict[str, Any]]:
    """The demo world's web requests, as ``benchmarks.instructions`` decides them."""
    from nba.demo.world import DemoWorld

    world = DemoWorld(customers)
    found: list[dict[str, Any]] = []
    while len(found) < count:
        request = world.request(world.pick())
        if request["channel"] == "web":
            keys = ("customer_id", "channel", "placement", "context", "limit")
            found.append({k: request[k] for k in keys if k in request})
    return found


def _callgrind(pid: int, *flags: str) -> None:
    subprocess.run(["callgrind_control", *flags, str(pid)], check=True, capture_output=True)


def count(requests: int, customers: int = 3000) -> dict[str, Any]:
    """Start the stack with the API under callgrind; instructions per counted request."""
    from engine.config import load_settings, resolve_api_keys
    from nba.load_measures import CpuWatch
    from nba.loadtest import _pick_key, _serving

    os.environ["NBA_DECISION_BUDGET_MS"] = BUDGET_MS  # the API inherits this process's
    os.environ["PYTHONHASHSEED"] = "0"
    settings = load_settings()
    keys, _ = resolve_api_keys(settings)
    bodies = web_requests(WARM_UP + SETTLE + requests, customers)
    counted, settle = bodies[-requests:], bodies[WARM_UP : WARM_UP + SETTLE]
    children: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as scratch:
        output = Path(scratch) / "api.out"
        prefix = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
        prefix.append(f"--callgrind-out-file={output}")
        with _serving(settings, 1, customers, children, CpuWatch(), prefix) as served:
            pid = children[-1].pid  # valgrind runs the API in its own process
            headers = {"Authorization": f"Bearer {_pick_key(keys)}"}
            with httpx.Client(base_url=served.base_url, timeout=60, headers=headers) as client:

                def send(batch: list[dict[str, Any]]) -> int:
                    fallbacks = 0
                    for body in batch:
                        answer = client.post("/v1/decisions", json=body)
                        answer.raise_for_status()
                        fallbacks += bool(answer.json().get("fallback"))
                    return fallbacks

                send(bodies[:WARM_UP] + counted)
                _callgrind(pid, "--instr=on")
                send(settle)
                _callgrind(pid, "--zero")
                fallbacks = send(counted)
                _callgrind(pid, "--dump")
        costs = self_costs(output.with_name("api.out.1"))  # the dump; at exit: api.out
    figures: dict[str, Any] = {"requests": requests, "fallbacks": fallbacks}
    return figures | per_unit(costs, requests)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args()
    figures = count(args.requests)
    path = written(figures, "api-instructions")
    print(f"per request {each_event(figures['per_decision'])}; fallbacks {figures['fallbacks']}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
