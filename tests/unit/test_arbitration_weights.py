"""Arbitration's priorities against the formula read literally: priority = propensity^a ×
context weight × value^b × lever^c × kind weight, where the context weight multiplies
every weight whose rule holds for the customer, the context and that candidate."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.domain import Action, Arbitration, ContextWeight
from rules.arbitration import CompiledArbitration
from rules.expressions import compile_expression

WEIGHTS = [
    ContextWeight(when="context.page_category == action.category", weight=1.5),
    ContextWeight(when="context.device == 'mobile'", weight=0.5),
    ContextWeight(when="action.value > 20", weight=2.0),
    ContextWeight(when="customer.segment == 'gold' and action.kind == 'offer'", weight=3.0),
]
CATEGORIES = ["shoes", "bags", "hats", None]

actions_strategy = st.lists(
    st.tuples(
        st.sampled_from(CATEGORIES),
        st.floats(0, 50),
        st.floats(0.1, 3),
        st.sampled_from(["offer", "banner", "activity"]),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(
    actions_strategy,
    st.lists(st.sampled_from(range(len(WEIGHTS))), max_size=4),
    st.sampled_from([1.0, 0.5, 2.0]),
    st.sampled_from(CATEGORIES),
    st.sampled_from(["mobile", "desktop"]),
    st.sampled_from(["gold", "retail"]),
    st.data(),
)
def test_priorities_are_the_formula_for_every_candidate(
    specs: list[tuple[str | None, float, float, str]],
    chosen: list[int],
    power: float,
    page: str | None,
    device: str,
    segment: str,
    data: st.DataObject,
) -> None:
    actions = [
        Action(
            id=f"a{n}",
            kind=kind,
            name=f"A{n}",
            channels=["web"],
            value=value,
            lever=lever,
            attributes={"category": category} if category else {},
        )
        for n, (category, value, lever, kind) in enumerate(specs)
    ]
    config = Arbitration(
        propensity_power=power,
        kind_weights={"activity": 4.0},
        context_weights=[WEIGHTS[k] for k in chosen],
    )
    arbitration = CompiledArbitration(config, actions)
    idx = np.array(
        data.draw(st.lists(st.integers(0, len(actions) - 1), min_size=1, max_size=8)),
        dtype=np.intp,
    )
    sized = st.lists(st.floats(0, 1), min_size=len(idx), max_size=len(idx))
    propensity = np.array(data.draw(sized))
    customer, context = {"segment": segment}, {"page_category": page, "device": device}

    priority, weight = arbitration.priorities(
        idx, propensity, customer, context, [a.rule_view() for a in actions], 0.0
    )

    for pos, index in enumerate(idx.tolist()):
        action = actions[index]
        expected_weight = 1.0
        for k in chosen:
            rule = compile_expression(WEIGHTS[k].when, "test")
            if rule.test(customer, context, action.rule_view(), 0.0):
                expected_weight *= WEIGHTS[k].weight
        kind_weight = 4.0 if action.kind == "activity" else 1.0
        expected = propensity[pos] ** power * expected_weight * action.value * action.lever
        assert math.isclose(weight[pos], expected_weight, rel_tol=1e-12)
        assert math.isclose(priority[pos], expected * kind_weight, rel_tol=1e-9, abs_tol=1e-300)


def test_the_weighing_kernel_is_ready_when_the_catalogue_is() -> None:
    """Compiled (or loaded from numba's cache) when the arbitration is built, so the first
    decision does not pay for it; a decision adds no other specialisation. In a fresh
    interpreter: other tests may have compiled it already in this one."""
    code = """
import numpy as np
import pytest
from engine.domain import Action, Arbitration, ContextWeight
from rules import arbitration
actions = [Action(id="a", kind="offer", name="A", channels=["web"], attributes={"category": "x"})]
weights = [ContextWeight(when="context.page == action.category", weight=2.0)]
compiled = arbitration.CompiledArbitration(Arbitration(context_weights=weights), actions)
assert len(arbitration._weigh.signatures) == 1, arbitration._weigh.signatures
idx = np.flatnonzero(np.ones(1, dtype=bool))
compiled.priorities(idx, np.array([0.5]), {}, {"page": "x"}, [{}], 0.0)
assert len(arbitration._weigh.signatures) == 1, arbitration._weigh.signatures
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_propensities_that_do_not_match_the_candidates_are_refused() -> None:
    actions = [Action(id=f"a{n}", kind="offer", name="A", channels=["web"]) for n in range(3)]
    compiled = CompiledArbitration(Arbitration(), actions)
    with pytest.raises(ValueError, match="2 propensities for 3 candidates"):
        compiled.priorities(np.arange(3), np.ones(2), {}, {}, [{}] * 3, 0.0)


def test_a_weight_that_held_for_one_decision_does_not_carry_over_to_the_next() -> None:
    """Each decision's factors start from ones (the table is copied, never shared)."""
    actions = [Action(id="a", kind="offer", name="A", channels=["web"])]
    weights = [ContextWeight(when="context.device == 'mobile'", weight=0.5)]
    compiled = CompiledArbitration(Arbitration(context_weights=weights), actions)
    views, idx = [a.rule_view() for a in actions], np.arange(1)
    mobile = compiled.priorities(idx, np.ones(1), {}, {"device": "mobile"}, views, 0.0)[1]
    desktop = compiled.priorities(idx, np.ones(1), {}, {"device": "desktop"}, views, 0.0)[1]
    assert mobile.tolist() == [0.5] and desktop.tolist() == [1.0]
