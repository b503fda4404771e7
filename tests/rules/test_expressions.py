"""Behaviour of the rule language: values, operators, null semantics and the Expression
object. Beside it: test_expression_functions.py, test_expression_safety.py (errors,
limits, what compiled code may reach) and test_expression_properties.py (random input)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

import pytest

from rules.expressions import Expression, compile_expression

NOW = 1_750_000_000.0
DAY = 86400.0
CUSTOMER: dict[str, object] = {
    "age": 34,
    "consent_marketing": True,
    "tier": "gold",
    "tags": ["vip", "new"],
    "address": {"city": "Paris", "country": "FR"},
    "last_order_at": NOW - 3 * DAY,
    "signup": "2025-06-14T15:06:40Z",  # NOW - 1 day
    "email": "Ann@Example.com",
    "score": 0.5,
    "zero": 0,
    "empty": "",
    "nothing": None,
    "off": False,
}
CONTEXT: dict[str, object] = {"page_category": "home", "channel": "web", "country": "FR"}
ACTION: dict[str, object] = {"id": "a1", "category": "bags", "value": 10.0}
REALISTIC = (
    "customer.consent_marketing and customer.age >= 18 and "
    'context.page_category != "checkout" and action.category in ["shoes", "bags"]'
)


def run(text: str, customer: Mapping[str, object] = CUSTOMER, now: float = NOW) -> object:
    return compile_expression(text).evaluate(customer, CONTEXT, ACTION, now)


def same(actual: object, expected: object) -> bool:
    """Equal and of the same type (so 1 is not True), with NaN equal to NaN."""
    if isinstance(expected, float) and math.isnan(expected):
        return isinstance(actual, float) and math.isnan(actual)
    if isinstance(expected, tuple):
        return (
            isinstance(actual, tuple)
            and len(actual) == len(expected)
            and all(same(a, e) for a, e in zip(actual, expected, strict=True))
        )
    return type(actual) is type(expected) and actual == expected


def check(text: str, expected: object) -> None:
    result = run(text)
    assert same(result, expected), f"{text!r} gave {result!r}, expected {expected!r}"


# -- values, names, operators ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("18", 18),
        ("0.5", 0.5),
        ("-3", -3),
        ("1e3", 1000.0),
        ("2.5E-1", 0.25),
        ('"gold"', "gold"),
        ("'gold'", "gold"),
        (r'"say \"hi\""', 'say "hi"'),
        (r"'it\'s'", "it's"),
        (r'"a\\b\nc\td\re\0"', "a\\b\nc\td\re\0"),
        (r'"\u00e9t\u00E9"', "été"),
        ("true", True),
        ("false", False),
        ("null", None),
        ('[1, 2, "a"]', (1, 2, "a")),
        ("[]", ()),
        ("[1, 2,]", (1, 2)),
        ("[customer.age, 1 + 1]", (34, 2)),
        ("customer.age", 34),
        ("customer.address.city", "Paris"),
        ("context.page_category", "home"),
        ("action.category", "bags"),
        ("now", NOW),
        ("customer.missing", None),
        ("customer.age.years", None),
        ("customer.address.street.number", None),
        ("customer.tags.first", None),
        ("customer.in", None),
        ("\n  customer.age\t", 34),
    ],
)
def test_values_and_names(text: str, expected: object) -> None:
    check(text, expected)


def test_bare_roots_are_the_whole_records() -> None:
    assert run("customer") is CUSTOMER
    check("'tier' in customer", True)
    check("'tier' in action", False)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("10 - 4 - 3", 3),
        ("100 / 10 / 5", 2.0),
        ("2 * 3 % 4", 2),
        ("7 / 2", 3.5),
        ("7 % 3", 1),
        ("-7 % 3", 2),
        ("1.5 + 1", 2.5),
        ("-2 * 3", -6),
        ("- customer.age", -34),
        ("--3", 3),
        ("-(1 + 2)", -3),
        ("1 - -1", 2),
        ("1 + 2 == 3", True),
        ("2 * 3 > 5 and 1 < 2", True),
        ("not 1 == 2", True),
        ("not customer.age >= 18", False),
        ("true or false and false", True),
        ("(true or false) and false", False),
        ("not true or true", True),
        ("not (true or true)", False),
        ("not not customer.tier", True),
        ("false and 1 / 0 > 0 or true", True),
        ("customer.age >= 18 and customer.tier == 'gold' or customer.zero", True),
        ("1 + 1 + 1 + 1 + 1 - 2 * 2", 1),
    ],
)
def test_arithmetic_precedence_and_logic(text: str, expected: object) -> None:
    check(text, expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("customer.age == 34", True),
        ("customer.age == 34.0", True),
        ("customer.age != 34", False),
        ("customer.age != 35", True),
        ("customer.age < 35", True),
        ("customer.age <= 34", True),
        ("customer.age > 34", False),
        ("customer.age >= 34", True),
        ("'apple' < 'banana'", True),
        ("'b' >= 'a'", True),
        ("customer.signup > '2025-01-01'", True),
        ("customer.tier == 'gold'", True),
        ("customer.tier == 'Gold'", False),
        ("[1, 'a'] == [1, 'a']", True),
        ("[1, 'a'] == [1, 'b']", False),
        ("[1, null] == [1, null]", True),
        ("customer.address == customer.address", True),
        ("'vip' in customer.tags", True),
        ("'gone' in customer.tags", False),
        ("'gone' not in customer.tags", True),
        ("'vip' not in customer.tags", False),
        ("'ar' in 'Paris'", True),
        ("1 in 'a1'", False),
        ("'city' in customer.address", True),
        ("'street' in customer.address", False),
        ("[1] in customer.address", False),
        ("1 in [1.0, 2]", True),
        ("true in [1, 2]", False),
        ("[1, 2] in [[1, 2], 3]", True),
        ("action.category in ['shoes', 'bags']", True),
        ("action.value in [10, 20]", True),
        ("action.value in ['10']", False),
        ("customer.tags in ['vip', 'new']", False),
        ("customer.tags in customer.address", False),
        ("'a' in [1, 'a']", True),
        ("null in [1, 'a']", False),
        ("customer.address in [1, 2]", False),
        ("customer.tags in [['vip', 'new'], 1]", True),
        ("customer.email is not null", True),
        ("customer.missing is null", True),
        ("customer.nothing is null", True),
        ("customer.off is null", False),
        ("1 is null", False),
        ("null is null", True),
        ("[] is not null", True),
        (REALISTIC, True),
    ],
)
def test_comparisons(text: str, expected: object) -> None:
    check(text, expected)


@pytest.mark.parametrize(
    ("customer", "context", "action", "expected"),
    [
        (CUSTOMER, CONTEXT, ACTION, True),
        ({**CUSTOMER, "consent_marketing": False}, CONTEXT, ACTION, False),
        ({**CUSTOMER, "age": 17}, CONTEXT, ACTION, False),
        ({**CUSTOMER, "age": None}, CONTEXT, ACTION, False),
        ({**CUSTOMER, "age": "34"}, CONTEXT, ACTION, False),
        (CUSTOMER, {"page_category": "checkout"}, ACTION, False),
        (CUSTOMER, {}, ACTION, False),  # missing page: != with null is false
        (CUSTOMER, CONTEXT, {"category": "hats"}, False),
        (CUSTOMER, CONTEXT, {}, False),
        ({}, {}, {}, False),
    ],
)
def test_realistic_rule(
    customer: dict[str, object],
    context: dict[str, object],
    action: dict[str, object],
    expected: bool,
) -> None:
    assert compile_expression(REALISTIC).test(customer, context, action, NOW) is expected


# -- null and type semantics -------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        # every comparison with null on either side is false
        "customer.missing == null",
        "null == null",
        "customer.missing == 1",
        "1 == customer.missing",
        "customer.missing != 1",
        "null != null",
        "customer.missing < 1",
        "customer.missing <= 1",
        "customer.missing > 1",
        "customer.missing >= 1",
        "1 >= customer.missing",
        "null in [null]",
        "customer.missing in customer.tags",
        "'vip' in customer.missing",
        "customer.missing not in ['a']",
        "'a' not in customer.missing",
        "null not in null",
        # incompatible kinds: false, never an error
        "'a' < 1",
        "'a' > 1",
        "1 <= 'a'",
        "'18' == 18",
        "[1] < [2]",
        "customer.address > customer.address",
        # booleans are not numbers
        "true > 0",
        "false < 1",
        "true == 1",
        "false == 0",
        "1 == true",
        "true in [1]",
        "1 in [true]",
    ],
)
def test_comparisons_with_null_or_mismatched_kinds_are_false(text: str) -> None:
    check(text, False)


@pytest.mark.parametrize(
    "text",
    ["'18' != 18", "true != 1", "customer.tier != 'silver'", "[1] != [1, 2]", "0 != false"],
)
def test_not_equal_is_true_for_present_values_that_differ(text: str) -> None:
    check(text, True)


@pytest.mark.parametrize(
    "text",
    [
        "customer.missing + 1",
        "1 - null",
        "null * 2",
        "'a' + 'b'",
        "'a' * 3",
        "customer.tags * 2",
        "[1] + [2]",
        "true + 1",
        "1 - false",
        "-true",
        "-'a'",
        "-null",
        "-customer.tags",
        "1 / 0",
        "1.5 / 0.0",
        "1 % 0",
        "customer.age / customer.zero",
        "1" + " * 10000000000" * 40,  # 10**400: too large for a number
        "1e300 * 1e300 / 0",
    ],
)
def test_arithmetic_with_null_or_non_numbers_is_null(text: str) -> None:
    check(text, None)


def test_float_overflow_is_infinity_not_an_error() -> None:
    check("1e308 * 10", math.inf)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("customer.tier and customer.age", True),
        ("customer.empty or customer.zero", False),
        ("customer.nothing or customer.off", False),
        ("customer.missing and 1 / 0", False),
        ("not customer.missing", True),
        ("not customer.tags", False),
        ("not []", True),
        ("not ''", True),
        ("not 0.0", True),
        ("not customer.address", False),
        ("customer.zero or 'x'", True),
        ("customer.tier and customer.zero or customer.empty", False),
        ("(customer.zero or customer.tier) and customer.age", True),
    ],
)
def test_logic_reads_truthiness_and_gives_booleans(text: str, expected: bool) -> None:
    check(text, expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("customer.age", True),
        ("customer.tier", True),
        ("customer.tags", True),
        ("customer.address", True),
        ("customer.score", True),
        ("customer.zero", False),
        ("customer.empty", False),
        ("customer.nothing", False),
        ("customer.missing", False),
        ("customer.off", False),
        ("0.0", False),
        ("[]", False),
        ("[0]", True),
        ("'false'", True),
        ("1 / 0", False),
    ],
)
def test_a_rule_holds_when_its_value_is_truthy(text: str, expected: bool) -> None:
    assert compile_expression(text).test(CUSTOMER, CONTEXT, ACTION, NOW) is expected


# -- the Expression object ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "roots"),
    [
        ("1 + 1", set()),
        ("action.category == 'bags'", {"action"}),
        ("customer.age > 1 or context.channel == 'web'", {"customer", "context"}),
        ("now > 5", {"now"}),
        ("days_since(action.launched)", {"action", "now"}),
        ("customer", {"customer"}),
        (REALISTIC, {"customer", "context", "action"}),
    ],
)
def test_roots(text: str, roots: set[str]) -> None:
    expression = compile_expression(text)
    assert expression.roots == frozenset(roots)
    assert expression.text == text


def test_expressions_compare_by_text() -> None:
    assert compile_expression("1 + 1") == compile_expression("1 + 1")
    assert compile_expression("1 + 1") != compile_expression("1+1")
    assert isinstance(hash(compile_expression("1")), int)
    assert "_evaluator" not in repr(compile_expression("1"))


class Tripwire(Mapping[str, object]):
    """A record that fails loudly if an expression touches it at all."""

    def __getitem__(self, key: str) -> object:
        raise AssertionError(f"read {key!r} from an undeclared root")

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("iterated an undeclared root")

    def __len__(self) -> int:
        raise AssertionError("measured an undeclared root")


class Opaque:
    """A value of no kind the language knows, whose own truth test would fail."""

    def __bool__(self) -> bool:
        raise ValueError("ambiguous")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("customer.odd and true", True),
        ("not customer.odd", False),
        ("customer.odd == customer.odd", False),
        ("customer.odd < 1", False),
        ("customer.odd + 1", None),
        ("customer.odd in [1]", False),
        ("len(customer.odd)", None),
        ("customer.odd.x", None),
    ],
)
def test_unknown_kinds_of_value_are_true_and_never_raise(text: str, expected: object) -> None:
    assert same(run(text, customer={"odd": Opaque()}), expected)


def test_test_never_raises_but_evaluate_reports_a_failing_input() -> None:
    expression = compile_expression("customer.age > 1")
    assert expression.test(Tripwire(), {}, {}, NOW) is False
    with pytest.raises(AssertionError):
        expression.evaluate(Tripwire(), {}, {}, NOW)


def test_compiled_once_then_reused() -> None:
    expression = compile_expression("customer.age >= 18")
    assert isinstance(expression, Expression)
    results = [expression.test({"age": age}, {}, {}, NOW) for age in (17, 18, None, "18")]
    assert results == [False, True, False, False]
