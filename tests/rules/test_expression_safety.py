"""The rule language refuses what it must: syntax errors with their position, input too
long or too deep, anything outside the language; and what it compiles reaches nothing
but its four roots."""

from __future__ import annotations

import itertools
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rules.expressions import RuleSyntaxError, compile_expression
from rules.parser import MAX_DEPTH, MAX_LENGTH
from tests.rules.test_expressions import ACTION, CONTEXT, CUSTOMER, NOW, run

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
