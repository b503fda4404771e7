"""Contact policies at their window edges, caps reserved atomically, arbitration."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from engine.decisions import Decider, DecisionPolicy
from engine.holders import LiveState
from engine.selection import DecisionInput
from engine.writes import EventWrites, Put, Stamp
from feature_store.memory_store import MemoryFeatureStore
from rules.catalogue import load_catalogue

DAY = 86400.0
CATALOGUE = """\
id: capped
kind: offer
name: Capped
channels: [web, email]
value: 100
contact_policy: {max_impressions: {count: 2, days: 7}, suppress_after_decline_days: 30}
attributes: {category: shoes}
---
id: second
kind: offer
name: Second
channels: [web, email]
value: 10
attributes: {category: shoes}
---
id: third
kind: banner
name: Third
channels: [web, email]
value: 5
attributes: {category: bags}
---
id: service
kind: activity
name: Service
channels: [web, email]
value: 1
attributes: {category: service}
---
channels:
  web:
    placements: [top]
    arbitration:
      diversity: category
      context_weights:
        - {when: context.page_category == action.category, weight: 100}
  email:
    placements: [block]
    caps: [{name: marketing, count: 2, days: 7, kinds: [offer, banner]}]
    control_share: 0
control: {share: 0}
"""


@pytest.fixture
def engine(tmp_path: Path) -> Decider:
    (tmp_path / "a.yaml").write_text(CATALOGUE)
    live = LiveState(load_catalogue(tmp_path))
    return Decider(MemoryFeatureStore(), live, None, DecisionPolicy(control_share=0.0))


async def shown(engine: Decider, now_offset: float = 0.0, **request: object) -> list[str]:
    body = {"customer_id": "c", "channel": "web", "placement": "top", "limit": 4, **request}
    result = await engine.decide(DecisionInput(**body))  # type: ignore[arg-type]
    return [a["action_id"] for a in result["actions"]]


async def stamp(engine: Decider, field: str, *ages_days: float) -> None:
    import time

    now = time.time()
    writes = tuple(Stamp("counters", field, now - age * DAY) for age in ages_days)
    await engine.store.apply([EventWrites("c", f"s-{field}-{ages_days}", writes)])


@pytest.mark.parametrize(
    ("ages_days", "blocked"),
    [
        ((), False),
        ((1.0,), False),
        ((1.0, 2.0), True),
        ((6.99, 0.5), True),
        ((7.01, 0.5), False),
        ((8.0, 9.0, 10.0), False),
    ],
)
async def test_max_impressions_counts_only_inside_the_window(
    engine: Decider, ages_days: tuple[float, ...], blocked: bool
) -> None:
    await stamp(engine, "capped:imp_ts", *ages_days)
    assert ("capped" not in await shown(engine)) is blocked


@pytest.mark.parametrize(("age_days", "blocked"), [(1.0, True), (29.9, True), (30.1, False)])
async def test_decline_suppresses_for_the_configured_days(
    engine: Decider, age_days: float, blocked: bool
) -> None:
    import time

    await engine.store.apply(
        [
            EventWrites(
                "c", "d", (Put("counters", "capped:last_decline", time.time() - age_days * DAY),)
            )
        ]
    )
    assert ("capped" not in await shown(engine)) is blocked


async def test_diversity_keeps_one_action_per_category(engine: Decider) -> None:
    assert await shown(engine) == ["capped", "third", "service"]


async def test_context_weight_lifts_matching_actions(engine: Decider) -> None:
    assert (await shown(engine, context={"page_category": "bags"}))[0] == "third"


async def test_channel_cap_is_reserved_atomically_under_concurrency(engine: Decider) -> None:
    async def one() -> list[str]:
        result = await engine.decide(DecisionInput("c", "email", "block", {}, 1))
        return [a["action_id"] for a in result["actions"]]

    results = await asyncio.gather(*(one() for _ in range(10)))
    marketing = [r for r in results if r and r[0] in ("capped", "second", "third")]
    assert len(marketing) == 2  # two marketing emails a week, however many ask at once
    assert all(r == ["service"] for r in results if r not in marketing)
    state = await engine.store.fetch("c")
    assert len(state.counters["cap:email:marketing"]) == 2


async def test_explanation_shows_caps_and_the_excluding_policy(engine: Decider) -> None:
    await stamp(engine, "capped:imp_ts", 1.0, 2.0)
    result = await engine.decide(DecisionInput("c", "web", "top", {}, 4, True))
    excluded = {e["action_id"]: e["excluded_by"] for e in result["excluded"]}
    assert excluded == {"capped": "contact_policy:max_impressions"}
    assert {c["action_id"] for c in result["candidates"]} == {"second", "third", "service"}
