"""Contact policies at their window edges, caps reserved atomically, arbitration."""

from __future__ import annotations

import asyncio
import doctest
from pathlib import Path

import pytest

from engine.decisions import Decider, DecisionPolicy
from engine.domain import Action, CatalogueSettings
from engine.holders import LiveState
from engine.selection import DecisionInput
from engine.writes import EventWrites, Put, Stamp
from feature_store.memory_store import MemoryFeatureStore
from rules import contact
from rules.catalogue import load_catalogue
from rules.contact import ContactRules

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


# -- the customer's contacts, as the customer view lists them ---------------------------


def contact_rules(settings: dict[str, object], *actions: tuple[str, list[str]]) -> ContactRules:
    return ContactRules(
        [Action(id=a, kind="offer", name=a, channels=channels) for a, channels in actions],
        CatalogueSettings.model_validate(settings),
    )


DEMO_CAPS = {
    "channels": {"email": {"caps": [{"name": "marketing", "count": 2, "days": 7}]}},
    "customer_caps": [
        {
            "name": "outbound",
            "count": 4,
            "days": 7,
            "kinds": ["offer", "banner", "activity"],
            "channels": ["email"],
        }
    ],
}


def listed(contacts: list[dict[str, object]]) -> list[tuple[object, ...]]:
    return [(c["at"], c["source"], c["channel"], c["action_id"], c["caps"]) for c in contacts]


@pytest.mark.parametrize(
    ("settings", "counters", "expected"),
    [
        pytest.param(  # two offers and an activity in one email decision
            DEMO_CAPS,
            {"cap:email:marketing": [5.0, 5.0], "cap:customer:outbound": [5.0, 5.0, 5.0]},
            [
                (5.0, "decision", "email", None, ["marketing", "outbound"]),
                (5.0, "decision", "email", None, ["marketing", "outbound"]),
                (5.0, "decision", "email", None, ["outbound"]),
            ],
            id="one-decision-three-contacts",
        ),
        pytest.param(  # an older decision still counted by the customer cap only
            DEMO_CAPS,
            {"cap:email:marketing": [9.0], "cap:customer:outbound": [2.0, 9.0]},
            [
                (9.0, "decision", "email", None, ["marketing", "outbound"]),
                (2.0, "decision", "email", None, ["outbound"]),
            ],
            id="customer-cap-names-its-only-channel",
        ),
        pytest.param(
            {"customer_caps": [{"name": "any", "count": 3, "days": 1}]},
            {"cap:customer:any": [1.0]},
            [(1.0, "decision", None, None, ["any"])],
            id="customer-cap-on-every-channel",
        ),
        pytest.param(
            {
                "customer_caps": [
                    {"name": "two", "count": 3, "days": 1, "channels": ["web", "shop"]}
                ]
            },
            {"cap:customer:two": [1.0]},
            [(1.0, "decision", None, None, ["two"])],
            id="customer-cap-on-two-channels",
        ),
        pytest.param(  # a cap since removed from the catalogue still names its channel
            {},
            {"cap:sms:weekly": [3.0], "cap:customer:gone": [3.0]},
            [(3.0, "decision", "sms", None, ["weekly", "gone"])],
            id="caps-no-longer-configured",
        ),
        pytest.param(
            DEMO_CAPS,
            {
                "cap:email:marketing": "not a list",
                "cap:customer:outbound": [True, "x", None, 4],
                "solo:imp_ts": {"a": 1},
                "solo:impression": 3.0,
                "all:click": 1.0,
            },
            [(4.0, "decision", "email", None, ["outbound"])],
            id="garbage-ignored",
        ),
    ],
)
def test_contacts_from_cap_stamps(
    settings: dict[str, object], counters: dict[str, object], expected: list[tuple[object, ...]]
) -> None:
    assert listed(contact_rules(settings).contacts(counters)) == expected


def test_impressions_take_their_channel_from_the_history_or_the_action() -> None:
    rules = contact_rules({}, ("solo", ["shop"]), ("many", ["web", "email"]))
    at = 1765080219.123456  # the history keeps every digit, the stamp 14 (Lua's cjson)
    history = [
        {"type": "response", "outcome": "click", "action_id": "many", "at": 50.0, "channel": "x"},
        {
            "type": "response",
            "outcome": "impression",
            "action_id": "many",
            "at": at,
            "channel": "web",
        },
    ]
    counters = {
        "many:imp_ts": [50.0, 1765080219.1235],
        "solo:imp_ts": [60.0],
        "gone:imp_ts": [40.0],
    }
    assert listed(rules.contacts(counters, history)) == [
        (1765080219.1235, "impression", "web", "many", []),
        (60.0, "impression", "shop", "solo", []),
        (50.0, "impression", None, "many", []),  # a click is not where it was shown
        (40.0, "impression", None, "gone", []),
    ]


def test_contacts_are_newest_first_and_bounded() -> None:
    rules = contact_rules(DEMO_CAPS, ("solo", ["web"]))
    counters = {
        "cap:email:marketing": [float(t) for t in range(0, 60, 2)],
        "solo:imp_ts": [float(t) for t in range(1, 60, 2)],
    }
    contacts = rules.contacts(counters, limit=50)
    assert [c["at"] for c in contacts] == [float(t) for t in range(59, 9, -1)]


async def test_a_decision_s_contacts_are_those_its_caps_counted(engine: Decider) -> None:
    """What the store keeps: an action no cap covers (the activity) leaves no stamp."""
    result = await engine.decide(DecisionInput("c", "email", "block", {}, 4))
    sent = [a["action_id"] for a in result["actions"]]
    assert sent == ["capped", "second", "service"]  # the banner found the cap full
    counters = (await engine.store.fetch("c")).counters
    contacts = engine.live.catalogue.contact.contacts(counters)
    assert [(c["channel"], c["caps"]) for c in contacts] == [("email", ["marketing"])] * 2


def test_the_contacts_example_runs() -> None:
    assert doctest.testmod(contact, raise_on_error=False).failed == 0
