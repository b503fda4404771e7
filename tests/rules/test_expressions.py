"""Behaviour of the rule language: values, operators, null semantics, functions, errors,
safety, and properties over random text and random well-formed expressions."""

from __future__ import annotations

import itertools
import math
import operator
import pickle
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rules import expressions
from rules.expressions import Expression, RuleSyntaxError, compile_expression
from rules.parser import FUNCTIONS, MAX_DEPTH, MAX_LENGTH

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


# -- functions ---------------------------------------------------------------------------


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


# -- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "column", "fragment"),
    [
        ("customer.age >", 1, 15, "expected a value but found end of expression"),
        ("customer.age = 18", 1, 14, "use '=='"),
        ("customer.a && customer.b", 1, 12, "use 'and'"),
        ("customer.a || customer.b", 1, 12, "use 'or'"),
        ("!customer.a", 1, 1, "use 'not'"),
        ("1 @ 2", 1, 3, "unexpected character '@'"),
        ("(customer.age > 1", 1, 18, "expected ')' but found end of expression (to close '('"),
        ("[1, 2", 1, 6, "expected ']'"),
        ("len(1", 1, 6, "expected ')'"),
        ("customer.age >= 18 and\n  foo.bar", 2, 3, "unknown name 'foo'"),
        ("customer.age\n\n   > 'abc", 3, 6, "unterminated string"),
        ("'abc\ndef'", 1, 1, "unterminated string"),
        (r"'a\qb'", 1, 3, "unknown escape"),
        (r"'\u12'", 1, 2, "unknown escape"),
        ("len(1, 2)", 1, 1, "len() takes 1 argument, got 2"),
        ("startswith('a')", 1, 1, "startswith() takes 2 arguments, got 1"),
        ("x or min(1)", 1, 1, "unknown name 'x'"),
        ("true or\n   min(1)", 2, 4, "min() takes at least 2 arguments, got 1"),
        ("coalesce()", 1, 1, "coalesce() takes at least 1 argument, got 0"),
        ("nope(1)", 1, 1, "unknown function 'nope'"),
        ("1 < 2 < 3", 1, 7, "cannot be chained"),
        ("1 == 1 in [true]", 1, 8, "cannot be chained"),
        ("customer.x is 3", 1, 15, "expected 'null' after 'is'"),
        ("customer.x is not", 1, 18, "expected 'null' after 'is'"),
        ("18abc", 1, 1, "invalid number"),
        ("1.", 1, 1, "invalid number"),
        ("1.2.3", 1, 1, "invalid number"),
        ("1e999", 1, 1, "too large"),
        ("1" * 101, 1, 1, "more than 100 digits"),
        ("", 1, 1, "expression is empty"),
        ("  \n  ", 2, 3, "expression is empty"),
        ("customer.age 18", 1, 14, "unexpected '18'"),
        ("1 == not 2", 1, 6, "put 'not ...' in parentheses"),
        ("now.x", 1, 4, "'now' is a number"),
        ("customer.age(1)", 1, 13, "only the built-in functions can be called"),
        ("len", 1, 1, "'len' is a function"),
        ("customer.", 1, 10, "expected an attribute name"),
        ("customer.1", 1, 10, "expected an attribute name"),
        ("and", 1, 1, "expected a value but found 'and'"),
        ("customer.a not customer.b", 1, 12, "unexpected 'not'"),
        (")", 1, 1, "expected a value but found ')'"),
        ("[,]", 1, 2, "expected a value but found ','"),
        ("1,2", 1, 2, "unexpected ','"),
        ("\tcustomer.é", 1, 11, "unexpected character 'é'"),
    ],
)
def test_error_positions(text: str, line: int, column: int, fragment: str) -> None:
    with pytest.raises(RuleSyntaxError) as caught:
        compile_expression(text, source="summer.yaml")
    error = caught.value
    assert (error.line, error.column) == (line, column), str(error)
    assert fragment in error.message
    assert str(error) == f"summer.yaml:{line}:{column}: {error.message}"


def test_syntax_error_is_a_value_error_and_can_be_moved() -> None:
    with pytest.raises(ValueError) as caught:
        compile_expression("customer.age >", source="catalogue/summer.yaml")
    error = caught.value
    assert isinstance(error, RuleSyntaxError)
    assert error.source == "catalogue/summer.yaml"
    moved = error.with_offset(10)
    assert (moved.line, moved.column, moved.message) == (11, error.column, error.message)
    assert str(moved) == f"catalogue/summer.yaml:11:{error.column}: {error.message}"
    assert error.line == 1  # the original is untouched
    assert str(pickle.loads(pickle.dumps(error))) == str(error)


def test_default_source_is_expr() -> None:
    with pytest.raises(RuleSyntaxError, match=r"^<expr>:1:1: "):
        compile_expression("?")


def test_length_limit() -> None:
    longest = " " * (MAX_LENGTH - 1) + "1"
    assert run(longest) == 1
    with pytest.raises(RuleSyntaxError, match="longer than") as caught:
        compile_expression(longest + " ")
    assert (caught.value.line, caught.value.column) == (1, MAX_LENGTH + 1)


def nested(depth: int, opener: str, closer: str, inner: str = "1") -> str:
    return opener * depth + inner + closer * depth


@pytest.mark.parametrize(
    ("opener", "closer"),
    [("(", ")"), ("[", "]"), ("abs(", ")"), ("not ", ""), ("-", ""), ("1 + (", ")")],
)
def test_nesting_limit(opener: str, closer: str) -> None:
    compile_expression(nested(MAX_DEPTH - 1, opener, closer, "customer.age"))
    with pytest.raises(RuleSyntaxError, match="nested too deeply"):
        compile_expression(nested(MAX_DEPTH + 1, opener, closer, "customer.age"))


@pytest.mark.parametrize(
    "text",
    [
        nested(3000, "(", ")"),
        nested(3000, "[", "]"),
        nested(3000, "len(", ")"),
        "not " * 2400,
        "-" * 9000 + "1",
        nested(1600, "(1 or 2 and 3 == 4 + 5 * -", ")"),
        nested(400, "(1 or 2 and 3 == 4 + 5 * ", ")"),
        nested(400, "(1 or not 3 in 4 + 5 * ", ")"),
    ],
)
def test_deep_input_is_a_syntax_error_not_a_recursion_error(text: str) -> None:
    with pytest.raises(RuleSyntaxError, match=r"nested too deeply|longer than"):
        compile_expression(text[:MAX_LENGTH])


@pytest.mark.parametrize(
    "layers",
    [
        ["not ({})"],
        ["-({})"],
        ["customer.x and ({})"],
        ["[{}]"],
        ["len([{}])", "({}) + 1", "coalesce({}) == 1", "not ({}) is null", "({}) or 2"],
    ],
)
def test_deepest_allowed_trees_compile_and_run(layers: list[str]) -> None:
    # Wrap until the limit, so the Python generated for the deepest trees is compiled too.
    text, depth = "customer.x", 1
    for layer in itertools.cycle(layers):
        try:
            compiled = compile_expression(layer.format(text))
        except RuleSyntaxError as error:
            assert "nested too deeply" in error.message
            break
        compiled.test(CUSTOMER, CONTEXT, ACTION, NOW)
        text, depth = layer.format(text), depth + 1
    assert depth >= MAX_DEPTH // 2


def test_long_flat_rules_compile() -> None:
    flat = [
        " and ".join(["customer.age > 1"] * 450),
        " + ".join(["customer.age"] * 600),
        "customer" + ".a" * 4900,
        "[" + ", ".join(["1"] * 3000) + "]",
        "customer.tier in [" + ", ".join(f"'t{i}'" for i in range(1000)) + "]",
    ]
    for text in flat:
        assert len(text) <= MAX_LENGTH
        compile_expression(text).test(CUSTOMER, CONTEXT, ACTION, NOW)
    assert run(" + ".join(["customer.age"] * 600)) == 34 * 600


# -- safety ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os')",
        "__import__('os').system('ls')",
        "os.system('ls')",
        "customer.__class__",
        "customer.__class__.__bases__",
        "customer.age.__class__",
        "customer._private",
        "action.__dict__",
        "eval('1')",
        "exec('1')",
        "open('/etc/passwd')",
        "getattr(customer, 'x')",
        "globals()",
        "__builtins__",
        "_",
        "x",
        "self",
        "lambda: 1",
        "customer['age']",
        "customer.age if true else 1",
        "1 if true else 2",
        "[x for x in customer.tags]",
        "customer.age ** 2",
        "customer.age // 2",
        "customer.tags[0]",
        "{'a': 1}",
        "customer;1",
        "`ls`",
        "True",
        "None",
    ],
)
def test_anything_outside_the_language_is_refused(text: str) -> None:
    with pytest.raises(RuleSyntaxError):
        compile_expression(text)


@pytest.mark.parametrize(
    "payload",
    [
        "__import__('os').system('echo pwned')",
        "' + __import__('os').getcwd() + '",
        '" + str(1/0) + "',
        "\\') or (1/0) or (\\'",
        "}{)(",
        "\n",
    ],
)
def test_string_literals_stay_strings(payload: str) -> None:
    assert run(quote(payload)) == payload


def test_generated_code_has_no_builtins() -> None:
    compiled = compile_expression("len(customer.tags)")
    assert compiled._evaluator.__globals__["__builtins__"] == {}


def quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return '"' + escaped.replace("\r", "\\r") + '"'


@given(st.text())
def test_any_string_survives_a_round_trip_as_a_literal(text: str) -> None:
    assert run(quote(text)) == text


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


# -- properties --------------------------------------------------------------------------

KEYS = ["age", "tier", "tags", "address", "city", "last_order_at", "x", "in"]
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=8)
    | st.datetimes(timezones=st.none() | st.just(UTC)).map(datetime.isoformat)
)
DATA = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS), inner),
    max_leaves=8,
)
RECORDS = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=4), DATA, max_size=6)
TOKENS = [
    *("customer.age", "customer.tags", "customer.address.city", "context.x", "action.tier"),
    *("now", "customer", "1", "0", "2.5", "'a'", '"vip"', "true", "false", "null"),
    *("[", "]", ",", "(", ")", "and", "or", "not", "in", "is", "==", "!=", "<", "<="),
    *(">", ">=", "+", "-", "*", "/", "%", "len(", "days_since(", "coalesce(", "min("),
    *("lower(", "contains(", "abs(", "startswith(", "hours_since(", "max(", "upper("),
]
TOKEN_SOUP = st.lists(st.sampled_from(TOKENS), max_size=25).map(" ".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text() | TOKEN_SOUP, customer=RECORDS, context=RECORDS, action=RECORDS)
def test_random_text_only_ever_raises_syntax_errors(
    text: str, customer: dict[str, object], context: dict[str, object], action: dict[str, object]
) -> None:
    try:
        expression = compile_expression(text)
    except RuleSyntaxError as error:
        assert error.line >= 1 and error.column >= 1
        return
    expression.evaluate(customer, context, action, NOW)
    assert isinstance(expression.test(customer, context, action, NOW), bool)


# A well-formed expression is drawn as a small tree of tuples, rendered fully bracketed,
# and evaluated by `reference` below: an independent reading of the documented semantics.

ARITHMETIC = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}
ARITHMETIC["%"] = operator.mod
ORDERING = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
BINARY = ["and", "or", "==", "!=", "in", "not in", *ARITHMETIC, *ORDERING]
LITERALS = (
    st.none()
    | st.booleans()
    | st.integers(-1000, 1000)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
)
LEAVES = st.one_of(
    LITERALS.map(lambda value: ("lit", value)),
    st.tuples(
        st.just("path"),
        st.sampled_from(["customer", "context", "action"]),
        st.lists(st.sampled_from(KEYS), max_size=3).map(tuple),
    ),
    st.just(("now",)),
)


def branches(inner: st.SearchStrategy[tuple[Any, ...]]) -> st.SearchStrategy[tuple[Any, ...]]:
    calls = st.sampled_from(sorted(FUNCTIONS)).flatmap(
        lambda name: st.lists(
            inner,
            min_size=FUNCTIONS[name][0],
            max_size=FUNCTIONS[name][1] or FUNCTIONS[name][0] + 2,
        ).map(lambda args: ("call", name, tuple(args)))
    )
    return st.one_of(
        st.tuples(st.sampled_from(["not", "neg"]), inner),
        st.tuples(st.just("binary"), st.sampled_from(BINARY), inner, inner),
        st.tuples(st.just("isnull"), inner, st.booleans()),
        st.lists(inner, max_size=3).map(lambda items: ("list", tuple(items))),
        calls,
    )


TREES = st.recursive(LEAVES, branches, max_leaves=20)


def render(tree: tuple[Any, ...]) -> str:
    kind = tree[0]
    if kind == "lit":
        value = tree[1]
        if value is None or isinstance(value, bool):
            return {None: "null", True: "true", False: "false"}[value]
        return quote(value) if isinstance(value, str) else repr(value)
    if kind == "path":
        return ".".join([tree[1], *tree[2]])
    if kind == "now":
        return "now"
    if kind == "not":
        return f"not ({render(tree[1])})"
    if kind == "neg":
        return f"-({render(tree[1])})"
    if kind == "binary":
        return f"({render(tree[2])}) {tree[1]} ({render(tree[3])})"
    if kind == "isnull":
        return f"({render(tree[1])}) is {'not ' if tree[2] else ''}null"
    if kind == "list":
        return "[" + ", ".join(render(item) for item in tree[1]) + "]"
    return f"{tree[1]}(" + ", ".join(render(arg) for arg in tree[2]) + ")"


def tree_roots(tree: tuple[Any, ...]) -> set[str]:
    kind = tree[0]
    if kind == "lit":
        return set()
    if kind == "path":
        return {tree[1]}
    if kind == "now":
        return {"now"}
    if kind in ("not", "neg", "isnull"):
        return tree_roots(tree[1])
    if kind == "binary":
        return tree_roots(tree[2]) | tree_roots(tree[3])
    if kind == "list":
        return set().union(*map(tree_roots, tree[1]))
    found = set().union(*map(tree_roots, tree[2]))
    return found | {"now"} if tree[1] in ("days_since", "hours_since") else found


def is_number(value: object) -> bool:
    return type(value) in (int, float)


def ref_equal(a: object, b: object) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if type(a) is bool or type(b) is bool:
        return type(a) is type(b) and a == b
    if is_number(a) and is_number(b):
        return a == b
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(map(ref_equal, a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(ref_equal(a[k], b[k]) for k in a)
    return False


def ref_in(item: object, collection: object) -> bool:
    if item is None or collection is None:
        return False
    if isinstance(collection, str):
        return isinstance(item, str) and item in collection
    if isinstance(collection, list | tuple):
        return any(ref_equal(item, member) for member in collection)
    if isinstance(collection, dict):
        return isinstance(item, str | int | float) and type(item) is not bool and item in collection
    return False


def ref_truthy(value: object) -> bool:
    return value is not None and bool(value)


def ref_stamp(value: object) -> float | None:
    if is_number(value):
        try:
            return float(value)  # type: ignore[arg-type]
        except OverflowError:
            return None
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    except (ValueError, OverflowError, OSError):
        return None


def ref_call(name: str, args: list[Any], now: float) -> object:
    if name in ("days_since", "hours_since"):
        stamp = ref_stamp(args[0])
        return None if stamp is None else (now - stamp) / (86400 if name == "days_since" else 3600)
    if name == "contains":
        return ref_in(args[1], args[0])
    if name == "coalesce":
        return next((arg for arg in args if arg is not None), None)
    if name in ("min", "max"):
        if all(map(is_number, args)) or all(isinstance(arg, str) for arg in args):
            return (min if name == "min" else max)(args)
        return None
    if name == "abs":
        return abs(args[0]) if is_number(args[0]) else None
    if name == "len":
        return len(args[0]) if isinstance(args[0], str | list | tuple | dict) else None
    methods: dict[str, Any] = {"lower": str.lower, "upper": str.upper, "startswith": str.startswith}
    return methods[name](*args) if all(isinstance(arg, str) for arg in args) else None


def reference(tree: tuple[Any, ...], roots: dict[str, Any], now: float) -> Any:
    kind = tree[0]
    if kind == "lit":
        return tree[1]
    if kind == "path":
        value = roots[tree[1]]
        for key in tree[2]:
            value = value.get(key) if isinstance(value, dict) else None
        return value
    if kind == "now":
        return now
    if kind == "not":
        return not ref_truthy(reference(tree[1], roots, now))
    if kind == "neg":
        value = reference(tree[1], roots, now)
        return -value if is_number(value) else None
    if kind == "isnull":
        return (reference(tree[1], roots, now) is None) != tree[2]
    if kind == "list":
        return tuple(reference(item, roots, now) for item in tree[1])
    if kind == "call":
        return ref_call(tree[1], [reference(arg, roots, now) for arg in tree[2]], now)
    op, left, right = tree[1], reference(tree[2], roots, now), reference(tree[3], roots, now)
    if op in ("and", "or"):
        return (
            (ref_truthy(left) and ref_truthy(right))
            if op == "and"
            else (ref_truthy(left) or ref_truthy(right))
        )
    if op in ("==", "!=", "in", "not in") and (left is None or right is None):
        return False
    if op in ("==", "!="):
        return ref_equal(left, right) == (op == "==")
    if op in ("in", "not in"):
        return ref_in(left, right) == (op == "in")
    if op in ORDERING:
        kinds_match = (is_number(left) and is_number(right)) or (
            isinstance(left, str) and isinstance(right, str)
        )
        return kinds_match and ORDERING[op](left, right)
    if not (is_number(left) and is_number(right)):
        return None
    try:
        result = ARITHMETIC[op](left, right)
    except (ZeroDivisionError, OverflowError):
        return None
    return None if isinstance(result, int) and abs(result) >= 2**1023 else result


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=TREES, customer=RECORDS, context=RECORDS, action=RECORDS)
def test_well_formed_expressions_match_the_reference(
    tree: tuple[Any, ...],
    customer: dict[str, object],
    context: dict[str, object],
    action: dict[str, object],
) -> None:
    text = render(tree)
    expression = compile_expression(text)
    assert expression.roots == frozenset(tree_roots(tree)), text
    result = expression.evaluate(customer, context, action, NOW)
    roots = {"customer": customer, "context": context, "action": action}
    expected = reference(tree, roots, NOW)
    assert same_deep(result, expected), f"{text}: got {result!r}, expected {expected!r}"
    assert expression.test(customer, context, action, NOW) is ref_truthy(expected)


def same_deep(actual: object, expected: object) -> bool:
    if isinstance(expected, dict | list):
        return actual is not None and actual == expected
    return same(actual, expected)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=TREES, customer=RECORDS, context=RECORDS, action=RECORDS)
def test_expressions_read_only_the_roots_they_declare(
    tree: tuple[Any, ...],
    customer: dict[str, object],
    context: dict[str, object],
    action: dict[str, object],
) -> None:
    expression = compile_expression(render(tree))
    records = {"customer": customer, "context": context, "action": action}
    guarded = {
        name: record if name in expression.roots else Tripwire() for name, record in records.items()
    }
    early = expression.evaluate(guarded["customer"], guarded["context"], guarded["action"], NOW)
    if "now" not in expression.roots:
        late = expression.evaluate(
            guarded["customer"], guarded["context"], guarded["action"], NOW * 2
        )
        assert same_deep(late, early)
