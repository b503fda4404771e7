"""What down-sampling the unanswered shown actions costs the adaptive model's learning
(``NBA_LEARN_NEGATIVE_SHARE``; streams/learner.py), measured paired and in process.

The simulator (benchmarks/simulator.py) runs the whole engine, whose own choices make
every run see a different stream: eleven runs could not tell the shares apart. Here the
shares learn from the very same stream instead, so that only the sampling differs. Per
seed, a demo world logs web and shop decisions under a uniformly random policy (its
hidden truth answers); one model learns from every observation, and one per share from
every click plus each unanswered action kept with that probability, at the inverse
weight (the learner's rule). Each model is scored on held-out requests against the
truth, at several stream lengths:

- ``value``: the true click rate of the action the model's mean ranks first, as a share
  of the way from the uniform policy (0) to the oracle (1);
- ``kl``: the mean Kullback-Leibler divergence of the model's probability from the true
  one over every candidate, in nats (lower is better).

``python -m benchmarks.negative_share`` writes ``benchmarks/results/<time>-negative-
share.json`` and a PNG of both measures against the stream's length.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.config import DEMO_CATALOGUE
from feature_store.memory_store import MemoryFeatureStore
from models.adaptive import AdaptiveModel, Observation
from nba.demo.seed import seed_directly
from nba.demo.world import PLACEMENTS, Customer, DemoWorld
from rules.catalogue import Catalogue, load_catalogue
from streams.learner import unanswered

RESULTS = Path(__file__).resolve().parent / "results"
CHANNELS = ("web", "shop")
BATCH = 2000  # observations per learning step: what the learner meets in a second at load


@dataclass(frozen=True)
class Ask:
    """One decision of the stream: who, where, and the candidates' views and truths."""

    features: Mapping[str, Any]
    context: Mapping[str, Any]
    views: Sequence[Mapping[str, Any]]
    truth: np.ndarray


async def world_asks(seed: int, count: int, customers: int) -> list[Ask]:
    world = DemoWorld(customers, seed=seed)
    catalogue = load_catalogue(DEMO_CATALOGUE)
    store = MemoryFeatureStore()
    await seed_directly(world, store, progress=False)
    states = await store.fetch_many([c.customer_id for c in world.customers])
    features = {c.customer_id: s.features() for c, s in zip(world.customers, states, strict=True)}
    asks: list[Ask] = []
    while len(asks) < count:
        customer = world.pick()
        request = world.request(customer)
        if request["channel"] not in CHANNELS:
            continue
        asks.append(ask_of(world, catalogue, customer, request, features[customer.customer_id]))
    return asks


def ask_of(
    world: DemoWorld,
    catalogue: Catalogue,
    customer: Customer,
    request: Mapping[str, Any],
    features: Mapping[str, Any],
) -> Ask:
    channel, placement = request["channel"], request["placement"]
    assert placement in PLACEMENTS[channel]
    views = [catalogue.views[int(i)] for i in catalogue.candidates(channel, placement)]
    context = {**request["context"], "channel": channel, "placement": placement}
    truth = np.array([world.click_probability(customer, context, v) for v in views])
    return Ask(features, context, views, truth)


def observations(asks: Sequence[Ask], rng: random.Random) -> list[Observation]:
    """The uniformly random logging policy's shown actions, answered by the truth."""
    out = []
    for ask in asks:
        shown = rng.randrange(len(ask.views))
        clicked = float(rng.random() < ask.truth[shown])
        out.append(Observation(ask.features, ask.context, ask.views[shown], clicked))
    return out


def sampled(
    stream: Sequence[Observation], share: float, rng: random.Random
) -> list[Observation | None]:
    """The learner's rule (:func:`streams.learner.unanswered`), in stream order: every
    click, and each unanswered action kept or, where dropped, None."""
    return [o if o.reward > 0 else unanswered(o, share, rng.random) for o in stream]


def scores(model: AdaptiveModel, held_out: Sequence[Ask]) -> dict[str, float]:
    value = uniform = oracle = kl = 0.0
    cells = 0
    for ask in held_out:
        q = np.clip(model.mean(ask.features, ask.context, ask.views), 1e-9, 1 - 1e-9)
        p = ask.truth
        value += float(p[int(np.argmax(q))])
        uniform += float(p.mean())
        oracle += float(p.max())
        kl += float(np.sum(p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))))
        cells += len(p)
    return {"value": (value - uniform) / (oracle - uniform), "kl": kl / cells}


def run_seed(
    seed: int, shares: Sequence[float], lengths: Sequence[int], held: int, customers: int
) -> dict[str, Any]:
    """Every share's model on the same stream of one world, scored at each length."""
    asks = asyncio.run(world_asks(seed, max(lengths) + held, customers))
    held_out, stream = asks[:held], observations(asks[held:], random.Random(seed))
    out: dict[str, Any] = {"click_rate": sum(o.reward for o in stream) / len(stream)}
    for share in shares:
        kept = sampled(stream, share, random.Random(seed + 1))
        model = AdaptiveModel(seed=seed)
        cpu, learned, done, points = 0.0, 0, 0, []
        for length in lengths:
            batch = [o for o in kept[done:length] if o is not None]
            started = time.process_time()
            for at in range(0, len(batch), BATCH):
                model.update_batch(batch[at : at + BATCH])
            cpu += time.process_time() - started
            learned, done = learned + len(batch), length
            points.append({"length": length, "observations": learned, **scores(model, held_out)})
        out[str(share)] = {"points": points, "learn_cpu_s": cpu}
    return out


def summarise(
    runs: Sequence[dict[str, Any]], shares: Sequence[float], lengths: Sequence[int]
) -> dict[str, Any]:
    """Medians over seeds, and each share's paired difference from learning on all."""
    full = str(max(shares))
    table: dict[str, Any] = {}
    for share in map(str, shares):
        rows = []
        for n, length in enumerate(lengths):
            row: dict[str, Any] = {"length": length}
            for measure in ("value", "kl"):
                mine = np.array([r[share]["points"][n][measure] for r in runs])
                base = np.array([r[full]["points"][n][measure] for r in runs])
                row[measure] = float(np.median(mine))
                worse = (mine < base) if measure == "value" else (mine > base)
                row[f"{measure}_minus_full"] = {
                    **_spread(mine - base),
                    "worse_in": int(worse.sum()),
                }
            row["observations"] = float(
                np.median([r[share]["points"][n]["observations"] for r in runs])
            )
            rows.append(row)
        cpu = [r[share]["learn_cpu_s"] / r[full]["learn_cpu_s"] for r in runs]
        table[share] = {"points": rows, "learn_cpu_ratio": float(np.median(cpu))}
    return {
        "seeds": len(runs),
        "click_rate": float(np.median([r["click_rate"] for r in runs])),
        "shares": table,
    }


def _spread(values: np.ndarray) -> dict[str, float]:
    return {
        "median": float(np.median(values)),
        "min": float(values.min()),
        "max": float(values.max()),
    }


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for share, data in summary["shares"].items():
        lengths = [p["length"] for p in data["points"]]
        label = f"share {share} (learning CPU ×{data['learn_cpu_ratio']:.2f})"
        axes[0].plot(lengths, [p["value"] for p in data["points"]], marker="o", label=label)
        axes[1].plot(lengths, [p["kl"] for p in data["points"]], marker="o", label=label)
    axes[0].set_ylabel("value: uniform 0, oracle 1 (median)")
    axes[1].set_ylabel("KL from the truth, nats (median)")
    lengths = [p["length"] for p in next(iter(summary["shares"].values()))["points"]]
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xticks(lengths, [f"{n:,}" for n in lengths])
        ax.minorticks_off()
        ax.set_xlabel("decisions logged")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"negative down-sampling, {summary['seeds']} seeds, paired")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--shares", type=float, nargs="+", default=[1.0, 0.5, 0.25, 0.1])
    parser.add_argument(
        "--lengths", type=int, nargs="+", default=[2_000, 5_000, 10_000, 20_000, 40_000]
    )
    parser.add_argument("--held-out", type=int, default=1_500)
    parser.add_argument("--customers", type=int, default=3_000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    runs = [
        run_seed(s, args.shares, sorted(args.lengths), args.held_out, args.customers)
        for s in range(1, args.seeds + 1)
    ]
    summary = summarise(runs, args.shares, sorted(args.lengths))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{stamp}-negative-share.json"
    path.write_text(json.dumps({"kind": "negative-share", "summary": summary, "runs": runs}))
    plot(summary, path.with_suffix(".png"))
    print(json.dumps(summary, indent=1))
    print(f"wrote {path} and {path.with_suffix('.png').name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
