"""The screener against the rules it compiles, one candidate at a time.

The screener keeps a plan per candidate array (which rule columns it needs); these
tests hold every answer to the plain reading of the rules, whatever arrays came before.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config import DEMO_CATALOGUE
from rules.catalogue import Catalogue, load_catalogue

CATALOGUE = load_catalogue(DEMO_CATALOGUE)
PLACES = sorted(CATALOGUE.index, key=str)

customers = st.fixed_dictionaries(
    {},
    optional={
        "age": st.integers(0, 99),
        "consent_marketing": st.booleans(),
        "consent_email": st.booleans(),
        "open_complaint": st.booleans(),
        "value_class": st.sampled_from(["A", "B", "C"]),
        "segment": st.sampled_from(["family", "senior", "young_urban"]),
        "churn_risk": st.floats(0, 1),
        "contract_days_left": st.integers(-10, 400),
    },
)
contexts = st.fixed_dictionaries(
    {},
    optional={
        "page_category": st.sampled_from(["shoes", "bags", "checkout", "landing", "home"]),
        "device": st.sampled_from(["mobile", "desktop"]),
        "reason": st.sampled_from(["billing", "complaint", "sales"]),
    },
)


def expected_keep(
    catalogue: Catalogue, idx: np.ndarray, customer: Any, context: Any, now: float
) -> list[bool]:
    """Each candidate alone: inside its validity window, and every check it has passes."""
    keep = []
    for i in idx:
        item = catalogue.actions[int(i)]
        start, end = item.action.valid_from, item.action.valid_to
        inside = (start is None or start.timestamp() <= now) and (
            end is None or now <= end.timestamp()
        )
        keep.append(
            inside
            and all(c.expression.test(customer, context, item.view, now) for c in item.checks)
        )
    return keep


@settings(max_examples=150, deadline=None)
@given(
    asks=st.lists(
        st.tuples(st.sampled_from(PLACES), customers, contexts, st.booleans()),
        min_size=1,
        max_size=8,
    )
)
def test_every_placement_screens_as_its_rules_read_whatever_came_before(
    asks: list[tuple[tuple[str, str | None], Any, Any, bool]],
) -> None:
    now = time.time()
    for (channel, placement), customer, context, fresh in asks:
        idx = CATALOGUE.candidates(channel, placement)
        if fresh:  # an array of its own, as the fallback path builds one
            idx = np.array(idx)
        context = {**context, "channel": channel, "placement": placement}
        keep, _ = CATALOGUE.screener.screen(idx, customer, context, now)
        assert keep.tolist() == expected_keep(CATALOGUE, idx, customer, context, now)


def test_a_placements_candidates_cannot_be_changed_in_place() -> None:
    """The screener's plans are kept per array: a changed array would go unnoticed."""
    idx = CATALOGUE.candidates("web", "home_hero")
    with pytest.raises(ValueError, match="read-only"):
        idx[0] = 0
