"""Properties of the rule language over random text and random well-formed expressions:
only syntax errors ever come out, the result matches a reference interpreter, and an
expression reads only the roots it declares."""

from __future__ import annotations

import operator
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rules.expressions import RuleSyntaxError, compile_expression
from rules.parser import FUNCTIONS
from tests.rules.test_expression_safety import quote
from tests.rules.test_expressions import NOW, Tripwire, same

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
