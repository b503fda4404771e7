"""Parse rule text into a small, validated syntax tree.

Everything that can be refused is refused here, at load time: unknown roots and
functions, private attribute names, wrong arity, chained comparisons and nesting
beyond ``MAX_DEPTH``. The back end can then trust every tree it is given.

It is a Pratt parser, so each level of brackets costs two Python frames, and chains
of the same operator are kept flat (``a + b + c`` is one node) so long rules do not
make deep trees.
"""

from __future__ import annotations

from dataclasses import dataclass

from rules.lexer import KEYWORDS, RuleSyntaxError, Token, position, tokenize

__all__ = [
    "FUNCTIONS",
    "MAX_DEPTH",
    "MAX_LENGTH",
    "ROOTS",
    "Arith",
    "Call",
    "Compare",
    "IsNull",
    "ListNode",
    "Literal",
    "Logical",
    "Neg",
    "Node",
    "Not",
    "Path",
    "children",
    "parse",
]

MAX_LENGTH = 10_000
MAX_DEPTH = 64
ROOTS = frozenset({"customer", "context", "action", "now"})
# name -> (fewest arguments, most arguments or None for no limit)
FUNCTIONS: dict[str, tuple[int, int | None]] = {
    "days_since": (1, 1),
    "hours_since": (1, 1),
    "contains": (2, 2),
    "len": (1, 1),
    "lower": (1, 1),
    "upper": (1, 1),
    "startswith": (2, 2),
    "coalesce": (1, None),
    "min": (2, None),
    "max": (2, None),
    "abs": (1, 1),
}
COMPARISONS = frozenset({"==", "!=", "<", "<=", ">", ">=", "in", "not in"})


@dataclass(frozen=True, slots=True)
class _Node:
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class Literal(_Node):
    value: object  # None, bool, int, float or str


@dataclass(frozen=True, slots=True)
class ListNode(_Node):
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Path(_Node):
    root: str
    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Not(_Node):
    operand: Node


@dataclass(frozen=True, slots=True)
class Neg(_Node):
    operand: Node


@dataclass(frozen=True, slots=True)
class Logical(_Node):
    op: str  # "and" | "or"
    operands: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Arith(_Node):
    """``first op1 x1 op2 x2 ...`` evaluated strictly left to right."""

    first: Node
    rest: tuple[tuple[str, Node], ...]


@dataclass(frozen=True, slots=True)
class Compare(_Node):
    op: str  # one of COMPARISONS
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class IsNull(_Node):
    operand: Node
    negated: bool


@dataclass(frozen=True, slots=True)
class Call(_Node):
    name: str
    args: tuple[Node, ...]


Node = Literal | ListNode | Path | Not | Neg | Logical | Arith | Compare | IsNull | Call

# Binding powers: higher binds tighter.
_OR, _AND, _NOT, _CMP, _ADD, _MUL, _UNARY = 1, 2, 3, 4, 5, 6, 7
_INFIX = {"or": _OR, "and": _AND, "+": _ADD, "-": _ADD, "*": _MUL, "/": _MUL, "%": _MUL}
_INFIX.update(dict.fromkeys(("==", "!=", "<", "<=", ">", ">=", "in", "is"), _CMP))
_CLOSERS = {"(": ")", "[": "]"}


def _describe(token: Token) -> str:
    return "end of expression" if token.kind == "eof" else repr(token.text)


class _Parser:
    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.tokens = tokenize(text, source)
        self.index = 0
        self.nesting = 0

    # -- token helpers -------------------------------------------------------------
    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.index + ahead, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.peek()
        self.index += 1
        return token

    def error(self, message: str, at: Token | _Node) -> RuleSyntaxError:
        return RuleSyntaxError(message, self.source, at.line, at.column)

    def expect(self, op: str, opener: Token | None = None) -> Token:
        token = self.peek()
        if token.kind == "op" and token.value == op:
            return self.advance()
        message = f"expected {op!r} but found {_describe(token)}"
        if opener is not None:
            message += f" (to close {opener.text!r} at {opener.line}:{opener.column})"
        raise self.error(message, token)

    def enter(self, token: Token) -> None:
        self.nesting += 1
        if self.nesting > MAX_DEPTH:
            raise self.error(f"expression is nested too deeply (limit {MAX_DEPTH})", token)

    # -- grammar -------------------------------------------------------------------
    def parse(self) -> Node:
        if self.peek().kind == "eof":
            raise self.error("expression is empty", self.peek())
        node = self.expression(0)
        token = self.peek()
        if token.kind != "eof":
            raise self.error(f"unexpected {_describe(token)}", token)
        return node

    def infix(self) -> tuple[str, int] | None:
        """The infix operator at the cursor and its binding power, if there is one."""
        token = self.peek()
        if token.kind == "name" and token.value == "not":
            following = self.peek(1)
            if following.kind == "name" and following.value == "in":
                return "not in", _CMP
            return None
        if token.kind in ("op", "name") and isinstance(token.value, str):
            power = _INFIX.get(token.value)
            return None if power is None else (token.value, power)
        return None

    def expression(self, min_power: int) -> Node:
        left = self.prefix(min_power)
        compared = False
        while (found := self.infix()) is not None and found[1] >= min_power:
            op, power = found
            token = self.advance()
            if power == _CMP:
                if compared:
                    raise self.error("comparisons cannot be chained; join them with 'and'", token)
                compared = True
            if op == "not in":
                self.advance()
            if op == "is":
                left = self.is_null(token, left)
            elif power == _CMP:
                left = Compare(token.line, token.column, op, left, self.expression(power + 1))
            elif power in (_OR, _AND):
                right = self.expression(power + 1)
                if isinstance(left, Logical) and left.op == op:
                    left = Logical(left.line, left.column, op, (*left.operands, right))
                else:
                    left = Logical(token.line, token.column, op, (left, right))
            else:
                right = self.expression(power + 1)
                if isinstance(left, Arith):  # a left fold, whatever the precedence inside
                    left = Arith(left.line, left.column, left.first, (*left.rest, (op, right)))
                else:
                    left = Arith(token.line, token.column, left, ((op, right),))
        return left

    def is_null(self, token: Token, operand: Node) -> Node:
        negated = self.peek().kind == "name" and self.peek().value == "not"
        if negated:
            self.advance()
        after = self.peek()
        if after.kind != "name" or after.value != "null":
            raise self.error(f"expected 'null' after 'is' but found {_describe(after)}", after)
        self.advance()
        return IsNull(token.line, token.column, operand, negated)

    def prefix(self, min_power: int) -> Node:
        token = self.advance()
        if token.kind in ("number", "string"):
            return Literal(token.line, token.column, token.value)
        if token.kind == "op" and token.value == "-":
            self.enter(token)
            operand = self.expression(_UNARY)
            self.nesting -= 1
            if isinstance(operand, Literal) and type(operand.value) in (int, float):
                return Literal(token.line, token.column, -operand.value)  # type: ignore[operator]
            return Neg(token.line, token.column, operand)
        if token.kind == "op" and token.value in _CLOSERS:
            self.enter(token)
            node = self.group(token) if token.value == "(" else self.list(token)
            self.nesting -= 1
            return node
        if token.kind == "name":
            return self.word(token, min_power)
        raise self.error(f"expected a value but found {_describe(token)}", token)

    def group(self, opener: Token) -> Node:
        node = self.expression(0)
        self.expect(")", opener)
        return node

    def list(self, opener: Token) -> Node:
        items: list[Node] = []
        while not (self.peek().kind == "op" and self.peek().value == "]"):
            items.append(self.expression(0))
            if not (self.peek().kind == "op" and self.peek().value == ","):
                break
            self.advance()
        self.expect("]", opener)
        return ListNode(opener.line, opener.column, tuple(items))

    def word(self, token: Token, min_power: int) -> Node:
        name = str(token.value)
        constants = {"true": True, "false": False, "null": None}
        if name in constants:
            return Literal(token.line, token.column, constants[name])
        if name == "not":
            if min_power > _NOT:
                raise self.error("put 'not ...' in parentheses here", token)
            self.enter(token)
            operand = self.expression(_NOT)
            self.nesting -= 1
            return Not(token.line, token.column, operand)
        if name in KEYWORDS:
            raise self.error(f"expected a value but found {name!r}", token)
        calling = self.peek().kind == "op" and self.peek().value == "("
        if calling:
            return self.call(token)
        if name in ROOTS:
            return self.path(token)
        if name in FUNCTIONS:
            raise self.error(f"{name!r} is a function; call it like {name}(...)", token)
        raise self.error(
            f"unknown name {name!r}; names start with customer., context., action. or now",
            token,
        )

    def path(self, root: Token) -> Node:
        keys: list[str] = []
        while self.peek().kind == "op" and self.peek().value == ".":
            if root.value == "now":
                raise self.error("'now' is a number and has no attributes", self.peek())
            self.advance()
            key = self.advance()
            if key.kind != "name":
                raise self.error(f"expected an attribute name but found {_describe(key)}", key)
            if key.text.startswith("_"):
                raise self.error("attribute names cannot start with '_'", key)
            keys.append(key.text)
        if self.peek().kind == "op" and self.peek().value == "(":
            raise self.error("only the built-in functions can be called", self.peek())
        return Path(root.line, root.column, str(root.value), tuple(keys))

    def call(self, token: Token) -> Node:
        name = str(token.value)
        if name not in FUNCTIONS:
            known = ", ".join(sorted(FUNCTIONS))
            raise self.error(f"unknown function {name!r}; the functions are {known}", token)
        opener = self.advance()
        self.enter(opener)
        args: list[Node] = []
        if not (self.peek().kind == "op" and self.peek().value == ")"):
            args.append(self.expression(0))
            while self.peek().kind == "op" and self.peek().value == ",":
                self.advance()
                args.append(self.expression(0))
        self.expect(")", opener)
        self.nesting -= 1
        least, most = FUNCTIONS[name]
        if len(args) < least or (most is not None and len(args) > most):
            wanted = str(least) if least == most else f"at least {least}"
            noun = "argument" if least == 1 else "arguments"
            raise self.error(f"{name}() takes {wanted} {noun}, got {len(args)}", token)
        return Call(token.line, token.column, name, tuple(args))


def children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, ListNode):
        return node.items
    if isinstance(node, Not | Neg | IsNull):
        return (node.operand,)
    if isinstance(node, Logical):
        return node.operands
    if isinstance(node, Arith):
        return (node.first, *(operand for _, operand in node.rest))
    if isinstance(node, Compare):
        return (node.left, node.right)
    if isinstance(node, Call):
        return node.args
    return ()


def _check_depth(root: Node, source: str) -> None:
    """Refuse trees deeper than MAX_DEPTH, so no later pass can hit Python's recursion limit."""
    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            message = f"expression is nested too deeply (limit {MAX_DEPTH})"
            raise RuleSyntaxError(message, source, node.line, node.column)
        stack.extend((child, depth + 1) for child in children(node))


def parse(text: str, source: str = "<expr>") -> Node:
    """The validated syntax tree of ``text``; raises RuleSyntaxError with a position."""
    if len(text) > MAX_LENGTH:
        line, column = position(text, MAX_LENGTH)
        message = f"expression is longer than {MAX_LENGTH} characters"
        raise RuleSyntaxError(message, source, line, column)
    node = _Parser(text, source).parse()
    _check_depth(node, source)
    return node
