"""A demo world: customers, their hidden tastes, and how they respond to actions.

The engine never sees the hidden part (each customer's favourite category and the
true response probabilities); the demo uses it to produce CRM and clickstream
events, to answer the engine's decisions with clicks, and to generate a logged
history for the first model.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

CATEGORIES = ("shoes", "bags", "electronics", "home", "sports", "beauty")
REGIONS = ("north", "south", "east", "west", "central")
SEGMENTS = ("young_urban", "family", "senior", "business")
CHANNEL_MIX = (("web", 0.6), ("shop", 0.15), ("email", 0.2), ("call_centre", 0.05))
PLACEMENTS = {
    "web": ("home_hero", "product_sidebar", "checkout_cross_sell", "search_results"),
    "shop": ("till_screen", "shelf_display"),
    "email": ("newsletter_block",),
    "call_centre": ("agent_desk",),
}
BASE_RATE = {"offer": 0.04, "banner": 0.02, "activity": 0.06}


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


@dataclass
class Customer:
    customer_id: str
    profile: dict[str, Any]
    favourite: str
    views: dict[str, int] = field(default_factory=dict)


class DemoWorld:
    """Seeded, so a demo run and its tests are repeatable."""

    def __init__(self, customers: int = 3000, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.customers = [self._customer(i) for i in range(customers)]

    def _customer(self, i: int) -> Customer:
        rng = self.rng
        age = rng.randint(17, 82)
        segment = rng.choice(SEGMENTS)
        value_class = rng.choices("ABC", weights=(0.2, 0.3, 0.5))[0]
        profile: dict[str, Any] = {
            "age": age,
            "age_band": f"{min(age // 10 * 10, 70)}-{min(age // 10 * 10, 70) + 9}",
            "region": rng.choice(REGIONS),
            "segment": segment,
            "tenure_months": rng.randint(0, 120),
            "value_class": value_class,
            "clv": round(
                {"A": 2500.0, "B": 900.0, "C": 250.0}[value_class] * rng.uniform(0.5, 1.5), 2
            ),
            "consent_marketing": rng.random() < 0.85,
            "consent_email": rng.random() < 0.75,
            "open_complaint": rng.random() < 0.05,
            "churn_risk": round(rng.betavariate(2, 5), 3),
            "orders": rng.randint(0, 30),
        }
        if rng.random() < 0.3:
            profile["contract_days_left"] = rng.randint(0, 365)
        return Customer(f"c-{i:05d}", profile, rng.choice(CATEGORIES))

    def pick(self) -> Customer:
        return self.rng.choice(self.customers)

    # ---- events -------------------------------------------------------------------
    def profile_event(self, customer: Customer, ts: float) -> dict[str, Any]:
        return {
            "event_id": f"crm-{uuid.uuid4().hex}",
            "customer_id": customer.customer_id,
            "type": "profile",
            "attributes": customer.profile,
            "timestamp": iso(ts),
        }

    def clickstream_events(self, customer: Customer, ts: float, n: int) -> Iterator[dict[str, Any]]:
        """Page views leaning to the favourite category; the world keeps the same counts
        the stream worker will compute, for the training history."""
        for _ in range(n):
            category = (
                customer.favourite if self.rng.random() < 0.5 else self.rng.choice(CATEGORIES)
            )
            customer.views[category] = customer.views.get(category, 0) + 1
            yield {
                "event_id": f"cs-{uuid.uuid4().hex}",
                "customer_id": customer.customer_id,
                "type": "page_view",
                "category": category,
                "timestamp": iso(ts),
            }

    def behaviour(self, customer: Customer) -> dict[str, Any]:
        """What the stream worker derives from :meth:`clickstream_events` (no windows yet)."""
        features: dict[str, Any] = {f"views_{c}": float(n) for c, n in customer.views.items()}
        if customer.views:
            features["views_total"] = float(sum(customer.views.values()))
        return features

    # ---- requests and responses ----------------------------------------------------
    def request(self, customer: Customer) -> dict[str, Any]:
        channel = self.rng.choices([c for c, _ in CHANNEL_MIX], [w for _, w in CHANNEL_MIX])[0]
        placement = self.rng.choice(PLACEMENTS[channel])
        context: dict[str, Any] = {}
        if channel in ("web", "shop"):
            page = customer.favourite if self.rng.random() < 0.4 else self.rng.choice(CATEGORIES)
            context = {"page_category": page, "device": self.rng.choice(("mobile", "desktop"))}
        elif channel == "call_centre":
            context = {"reason": self.rng.choice(("billing", "complaint", "sales", "service"))}
        return {
            "customer_id": customer.customer_id,
            "channel": channel,
            "placement": placement,
            "context": context,
            "limit": 1,
        }

    def click_probability(
        self, customer: Customer, context: Mapping[str, Any], action: Mapping[str, Any]
    ) -> float:
        """The hidden truth the engine has to learn."""
        p = BASE_RATE.get(str(action.get("kind")), 0.03)
        category = action.get("category")
        if category == customer.favourite:
            p *= 4.0
        if category is not None and context.get("page_category") == category:
            p *= 2.0
        band = action.get("price_band")
        if band == "high":
            p *= {"A": 1.6, "B": 1.0, "C": 0.5}[customer.profile["value_class"]]
        if band == "low":
            p *= 1.3 if customer.profile["value_class"] == "C" else 0.9
        if customer.profile["segment"] == "young_urban" and category in ("electronics", "sports"):
            p *= 1.5
        if customer.profile["segment"] == "senior" and category == "home":
            p *= 1.5
        return min(p, 0.9)

    def responds(
        self, customer: Customer, context: Mapping[str, Any], action: Mapping[str, Any]
    ) -> bool:
        return self.rng.random() < self.click_probability(customer, context, action)
