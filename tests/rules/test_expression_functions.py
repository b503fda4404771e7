"""The rule language's functions: what each gives, null in, null out, and the time
functions' reading of ``now`` whatever the local zone."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from rules import expressions
from rules.expressions import compile_expression
from rules.parser import FUNCTIONS
from tests.rules.test_expressions import run, same


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("days_since(customer.last_order_at)", 3.0),
        ("hours_since(customer.last_order_at)", 72.0),
        ("days_since(customer.signup)", 1.0),
        ("days_since('2025-06-14T15:06:40')", 1.0),  # no zone: UTC
        ("days_since('2025-06-14T17:06:40+02:00')", 1.0),
        ("days_since(' 2025-06-14T15:06:40Z ')", 1.0),
        ("hours_since('2025-06-15')", 15 + 6 / 60 + 40 / 3600),
        ("days_since(now)", 0.0),
        ("days_since(null)", None),
        ("days_since(customer.missing)", None),
        ("days_since('yesterday')", None),
        ("days_since('')", None),
        ("days_since(true)", None),
        ("days_since([1])", None),
        ("hours_since(customer.address)", None),
        ("days_since('2025-13-01')", None),
        ("contains(customer.tags, 'vip')", True),
        ("contains(customer.tags, 'nope')", False),
        ("contains('Paris', 'ar')", True),
        ("contains(customer.address, 'city')", True),
        ("contains(null, 1)", False),
        ("contains(customer.tags, null)", False),
        ("contains(42, 4)", False),
        ("len(customer.tier)", 4),
        ("len(customer.tags)", 2),
        ("len(customer.address)", 2),
        ("len('')", 0),
        ("len(customer.age)", None),
        ("len(null)", None),
        ("lower(customer.email)", "ann@example.com"),
        ("upper(customer.tier)", "GOLD"),
        ("lower(customer.age)", None),
        ("upper(null)", None),
        ("startswith(customer.email, 'Ann')", True),
        ("startswith(customer.email, 'ann')", False),
        ("startswith(customer.age, '3')", None),
        ("startswith(customer.email, null)", None),
        ("coalesce(customer.missing, customer.nothing, 'fallback')", "fallback"),
        ("coalesce(customer.age, 0)", 34),
        ("coalesce(customer.off, true)", False),
        ("coalesce(null)", None),
        ("min(3, 1.5, 2)", 1.5),
        ("max(3, 1.5, 2)", 3),
        ("min('b', 'a')", "a"),
        ("max('b', 'a')", "b"),
        ("min(1, 'a')", None),
        ("max(1, null)", None),
        ("max(true, 1)", None),
        ("abs(-3)", 3),
        ("abs(-2.5)", 2.5),
        ("abs('x')", None),
        ("abs(null)", None),
        ("abs(false)", None),
        ("len(lower(coalesce(customer.missing, 'ABC')))", 3),
    ],
)
def test_functions(text: str, expected: object) -> None:
    result = run(text)
    if isinstance(expected, float):
        assert isinstance(result, float) and result == pytest.approx(expected)
    else:
        assert same(result, expected), f"{text!r} gave {result!r}"


def test_numbers_too_large_for_a_float_give_null() -> None:
    huge = {"big": 10**400}
    for text in ["days_since(customer.big)", "customer.big + 0.5", "customer.big / 3"]:
        assert run(text, customer=huge) is None
    assert run("customer.big > 1e308", customer=huge) is True


@pytest.fixture
def new_york(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run with a local zone far from UTC, to show naive times are read as UTC anyway."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("new_york")
def test_times_without_a_zone_are_utc_whatever_the_local_zone() -> None:
    assert run("days_since('2025-06-14T15:06:40')") == pytest.approx(1.0)
    assert run("hours_since('2025-06-15')") == pytest.approx(15 + 6 / 60 + 40 / 3600)


def test_time_functions_need_a_numeric_now() -> None:
    expression = compile_expression("days_since(1)")
    assert expression.evaluate({}, {}, {}, None) is None  # type: ignore[arg-type]
    assert expression.evaluate({}, {}, {}, "soon") is None  # type: ignore[arg-type]


def test_every_function_is_documented() -> None:
    doc = expressions.__doc__ or ""
    missing = [name for name in FUNCTIONS if f"{name}(" not in doc]
    assert not missing


@pytest.mark.parametrize("text", ["days_since(1)", "hours_since(customer.signup)"])
def test_time_functions_read_now(text: str) -> None:
    assert "now" in compile_expression(text).roots
