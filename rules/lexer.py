"""Tokens of the rule language, and the error every stage of compiling a rule raises.

The lexer is hand-written over ASCII character classes on purpose: Python's own
``str.isdigit``/``int()`` accept non-ASCII digits, which would let text that looks
like something else through. Every token keeps its 1-based line and column so a
business user is told exactly where a rule went wrong.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["KEYWORDS", "RuleSyntaxError", "Token", "TokenKind", "position", "tokenize"]


class RuleSyntaxError(ValueError):
    """A rule that cannot be compiled, located at ``source:line:column``."""

    def __init__(self, message: str, source: str = "<expr>", line: int = 1, column: int = 1):
        super().__init__(message, source, line, column)
        self.message = message
        self.source = source
        self.line = line
        self.column = column

    def __str__(self) -> str:
        return f"{self.source}:{self.line}:{self.column}: {self.message}"

    def with_offset(self, line_offset: int) -> RuleSyntaxError:
        """The same error with the line moved, for a caller whose rule sits inside a file."""
        return RuleSyntaxError(self.message, self.source, self.line + line_offset, self.column)


TokenKind = Literal["number", "string", "name", "op", "eof"]
KEYWORDS = frozenset({"and", "or", "not", "in", "is", "true", "false", "null"})


@dataclass(frozen=True, slots=True)
class Token:
    """One lexeme: ``value`` is the decoded literal for numbers and strings, else the text."""

    kind: TokenKind
    value: object
    text: str
    line: int
    column: int


_NUMBER = re.compile(r"[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_IDENT_CHAR = re.compile(r"[A-Za-z0-9_.]")
# Two-character operators first, so "<=" is not read as "<" then "=".
_OPERATORS = ("==", "!=", "<=", ">=", *"<>+-*/%()[],.")
_HINTS = {
    "=": "use '==' to compare",
    "!": "use 'not' or '!='",
    "&": "use 'and'",
    "|": "use 'or'",
}
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t", "r": "\r", "0": "\0"}
_HEX = frozenset("0123456789abcdefABCDEF")
# int() refuses more than 4300 digits; no business rule needs a fraction of that.
_MAX_INT_DIGITS = 100


def position(text: str, offset: int) -> tuple[int, int]:
    """1-based (line, column) of ``offset`` in ``text``; columns count characters."""
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, column


class _Lexer:
    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        self.pos = 0
        self.line = 1
        self.line_start = 0  # tokens never span lines, so this locates every token
        self.tokens: list[Token] = []

    def error(self, message: str, offset: int) -> RuleSyntaxError:
        return RuleSyntaxError(message, self.source, self.line, offset - self.line_start + 1)

    def add(self, kind: TokenKind, value: object, start: int) -> None:
        column = start - self.line_start + 1
        self.tokens.append(Token(kind, value, self.text[start : self.pos], self.line, column))

    def run(self) -> list[Token]:
        text = self.text
        while True:
            while self.pos < len(text) and text[self.pos] in " \t\r\n":
                if text[self.pos] == "\n":
                    self.line += 1
                    self.line_start = self.pos + 1
                self.pos += 1
            if self.pos >= len(text):
                self.add("eof", None, self.pos)
                return self.tokens
            char = text[self.pos]
            if char in "0123456789":
                self.number()
            elif char in "\"'":
                self.string()
            elif match := _NAME.match(text, self.pos):
                start, self.pos = self.pos, match.end()
                self.add("name", match.group(), start)
            else:
                self.operator(char)

    def number(self) -> None:
        start = self.pos
        match = _NUMBER.match(self.text, start)
        assert match is not None  # the caller saw a digit
        self.pos = match.end()
        if _IDENT_CHAR.match(self.text, self.pos):
            raise self.error(f"invalid number {self.text[start : self.pos + 1]!r}", start)
        literal = match.group()
        value: int | float
        if match.group(1) or match.group(2):
            value = float(literal)
            if not math.isfinite(value):
                raise self.error(f"number {literal} is too large", start)
        else:
            if len(literal) > _MAX_INT_DIGITS:
                raise self.error(f"number has more than {_MAX_INT_DIGITS} digits", start)
            value = int(literal)
        self.add("number", value, start)

    def string(self) -> None:
        start = self.pos
        quote = self.text[start]
        self.pos += 1
        chars: list[str] = []
        while True:
            if self.pos >= len(self.text) or self.text[self.pos] == "\n":
                raise self.error("unterminated string (strings cannot span lines)", start)
            char = self.text[self.pos]
            if char == quote:
                self.pos += 1
                self.add("string", "".join(chars), start)
                return
            if char == "\\":
                chars.append(self.escape())
            else:
                chars.append(char)
                self.pos += 1

    def escape(self) -> str:
        start = self.pos
        code = self.text[start + 1 : start + 2]
        if code in _ESCAPES:
            self.pos += 2
            return _ESCAPES[code]
        digits = self.text[start + 2 : start + 6]
        if code == "u" and len(digits) == 4 and set(digits) <= _HEX:
            self.pos += 6
            return chr(int(digits, 16))
        raise self.error(
            "unknown escape; use \\\\, \\', \\\", \\n, \\t, \\r, \\0 or \\uXXXX", start
        )

    def operator(self, char: str) -> None:
        start = self.pos
        for op in _OPERATORS:
            if self.text.startswith(op, start):
                self.pos += len(op)
                self.add("op", op, start)
                return
        hint = _HINTS.get(char)
        message = f"unexpected character {char!r}"
        raise self.error(f"{message}; {hint}" if hint else message, start)


def tokenize(text: str, source: str = "<expr>") -> list[Token]:
    """The tokens of ``text``, ending with an ``eof`` token; raises RuleSyntaxError."""
    return _Lexer(text, source).run()
