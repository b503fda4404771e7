"""A simulated world driving the real API over HTTP, to measure how fast the engine
learns (issue: models). Customers have hidden tastes (nba.demo.world.DemoWorld); each
decision's shown action is clicked with its hidden probability, and the response is
posted back. Baselines in the same world, on the same eligible candidates:

- uniform random: the mean true click probability over the eligible candidates (exact);
- context-free Thompson sampling: Beta-Bernoulli per action, simulated alongside.

``python -m benchmarks.simulator --decisions 20000`` starts its own stack (embedded
Redis and broker, the stream worker, the API with an empty model registry), seeds the
world, drives it, and writes ``benchmarks/results/<time>-simulator.json`` and a PNG of
the learning curves.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from engine.config import DEMO_CATALOGUE
from engine.embedded import EmbeddedStack, free_port
from nba.demo.seed import seed_through_kafka
from nba.demo.world import DemoWorld
from rules.catalogue import load_catalogue
from streams.lag import wait_for_lag_zero
from streams.worker import worker_group

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
KEY = "simulator-key-0001"


class ContextFreeThompson:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.wins: dict[str, float] = {}
        self.trials: dict[str, float] = {}

    def choose(self, candidates: list[str]) -> str:
        draws = [
            self.rng.beta(1 + self.wins.get(a, 0), 1 + self.trials.get(a, 0) - self.wins.get(a, 0))
            for a in candidates
        ]
        return candidates[int(np.argmax(draws))]

    def update(self, action: str, reward: float) -> None:
        self.trials[action] = self.trials.get(action, 0) + 1
        self.wins[action] = self.wins.get(action, 0) + reward


async def drive(
    base_url: str, world: DemoWorld, decisions: int, concurrency: int
) -> dict[str, Any]:
    views = {a.action.id: a.view for a in load_catalogue(DEMO_CATALOGUE).actions}  # same actions
    engine_clicks: list[float] = []
    uniform: list[float] = []
    thompson = ContextFreeThompson(11)
    thompson_clicks: list[float] = []
    rng = random.Random(13)
    done = 0
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as client:

        async def one() -> None:
            nonlocal done
            while done < decisions:
                done += 1
                customer = world.pick()
                request = world.request(customer)
                request.update(channel="web", placement="home_hero", explain=True, limit=1)
                request["context"] = {
                    "page_category": rng.choice(
                        [
                            customer.favourite,
                            *("shoes", "bags", "electronics", "home", "sports", "beauty"),
                        ]
                    ),
                    "device": rng.choice(("mobile", "desktop")),
                }
                reply = (await client.post("/v1/decisions", json=request)).json()
                eligible = [c["action_id"] for c in reply.get("candidates", [])]
                if not reply.get("actions") or not eligible:
                    continue
                context = request["context"]
                truth = {a: world.click_probability(customer, context, views[a]) for a in eligible}
                uniform.append(float(np.mean(list(truth.values()))))
                picked = thompson.choose(eligible)
                reward = float(rng.random() < truth[picked])
                thompson.update(picked, reward)
                thompson_clicks.append(reward)
                action = reply["actions"][0]["action_id"]
                clicked = rng.random() < truth[action]
                engine_clicks.append(float(clicked))
                base = {
                    "decision_id": reply["decision_id"],
                    "action_id": action,
                    "customer_id": customer.customer_id,
                    "channel": "web",
                }
                await client.post("/v1/responses", json={**base, "outcome": "impression"})
                if clicked:
                    await client.post("/v1/responses", json={**base, "outcome": "click"})

        await asyncio.gather(*(one() for _ in range(concurrency)))
    return {"engine": engine_clicks, "uniform": uniform, "thompson": thompson_clicks}


def curves(series: dict[str, list[float]], window: int = 1000) -> dict[str, list[float]]:
    out = {}
    for name, values in series.items():
        v = np.asarray(values)
        if len(v) >= window:
            out[name] = (np.convolve(v, np.ones(window) / window, mode="valid")[::100]).tolist()
    return out


def plot(series: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for name, values in curves(series).items():
        ax.plot(np.arange(len(values)) * 100 + 1000, values, label=name)
    ax.set_xlabel("decisions")
    ax.set_ylabel("click rate (moving average of 1,000)")
    ax.set_title("Learning in the simulated world")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def click_rate_catalogue(folder: Path) -> Path:
    """The demo catalogue, arbitrated on propensity alone on the web: the simulator
    measures clicks, so value and levers must not outweigh them."""
    import shutil

    shutil.copytree(DEMO_CATALOGUE, folder)
    text = (folder / "channels.yaml").read_text()
    text = text.replace(
        "      diversity: category            # at most one action per category on a page\n",
        "      value_power: 0\n      lever_power: 0\n",
    )
    (folder / "channels.yaml").write_text(
        text.replace("control: {share: 0.05", "control: {share: 0.0")
    )
    return folder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=20_000)
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nba-sim-"))
    topics = [f"sim.{t}" for t in ("clickstream", "crm", "responses", "decisions", "dlq")]
    with EmbeddedStack(work / "stack", topics=topics) as endpoints:
        port = free_port()
        env = {
            **os.environ,
            "NBA_REDIS_URL": endpoints.redis_url,
            "NBA_KAFKA_BROKERS": endpoints.kafka_brokers,
            "NBA_TOPIC_PREFIX": "sim.",
            "NBA_PORT": str(port),
            "NBA_API_KEYS": json.dumps({KEY: ["admin"]}),
            "NBA_DATA_DIR": str(work / "data"),
            "NBA_MODEL_DIR": str(work / "models"),
        }
        logs = work / "logs"
        logs.mkdir()
        children = [
            subprocess.Popen(
                [sys.executable, "-m", "nba.cli", name],
                env=env,
                cwd=ROOT,
                stdout=(logs / f"{name}.log").open("wb"),
                stderr=subprocess.STDOUT,
            )
            for name in ("worker", "serve")
        ]
        try:
            world = DemoWorld(args.customers, seed=21)
            asyncio.run(seed_through_kafka(world, endpoints.kafka_brokers, "sim.", progress=False))
            asyncio.run(
                wait_for_lag_zero(
                    endpoints.kafka_brokers, worker_group("sim."), ["sim.crm", "sim.clickstream"]
                )
            )
            base_url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("API not ready")
                time.sleep(0.2)
            started = time.monotonic()
            series = asyncio.run(drive(base_url, world, args.decisions, args.concurrency))
            seconds = time.monotonic() - started
        finally:
            for child in children:
                child.terminate()
                child.wait(20)
    last = {k: float(np.mean(v[-5000:])) for k, v in series.items() if v}
    result = {
        "decisions": len(series["engine"]),
        "seconds": seconds,
        "click_rate_last_5000": last,
        "ratio_engine_to_uniform": last["engine"] / last["uniform"],
        "ratio_engine_to_context_free_thompson": last["engine"] / last["thompson"],
        "click_rate_overall": {k: float(np.mean(v)) for k, v in series.items() if v},
        "curves": curves(series),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    path = args.out / f"{stamp}-simulator.json"
    path.write_text(json.dumps(result, indent=2))
    plot(series, path.with_suffix(".png"))
    print(json.dumps({k: v for k, v in result.items() if k != "curves"}, indent=2))
    print(f"written {path} and {path.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
