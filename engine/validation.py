"""Validation errors that name the field in one clear sentence.

pydantic reports a value that fits no member of a union once per member
(``context.a.str``, ``context.a.int``, …) and a pattern by its regular expression.
:class:`Worded` puts one sentence in their place. It wraps the value's validator inside
pydantic-core, so a valid value runs no Python and the hot path's parse costs the same.
:func:`first_error` gives the field and message of a failed validation, for a 422 or a
dead letter.

>>> from typing import Annotated
>>> from pydantic import TypeAdapter, ValidationError
>>> flat = TypeAdapter(dict[str, Annotated[str | int, Worded("must be a string or a number")]])
>>> try:
...     flat.validate_python({"a": {"b": 1}})
... except ValidationError as exc:
...     print(first_error(exc))
('a', 'must be a string or a number')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import GetCoreSchemaHandler, ValidationError
from pydantic_core import CoreSchema, core_schema

__all__ = ["Worded", "first_error"]


@dataclass(frozen=True, slots=True)
class Worded:
    """``Annotated[T, Worded("must be …")]``: any error of a T value is this one message,
    located at the value. The JSON schema is T's own."""

    message: str
    kind: str = "invalid_value"

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.custom_error_schema(
            handler(source), self.kind, custom_error_message=self.message
        )


def first_error(exc: ValidationError, whole: str = "body") -> tuple[str, str]:
    """The first error's field (its location, dot-separated; ``whole`` when it is the
    whole value) and message."""
    error = exc.errors(include_url=False)[0]
    return ".".join(str(p) for p in error["loc"]) or whole, error["msg"]
