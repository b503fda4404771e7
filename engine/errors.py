"""The engine's error tree; each error knows the HTTP status the API answers with.

NbaError
├── BadRequest (422)      a request names a field that is wrong
├── NotFound (404)
├── Unauthorized (401)    no key, or an unknown key
├── Forbidden (403)       the key lacks the scope
├── CatalogueError (422)  a catalogue or rule file was refused; lists every problem
├── StoreUnavailable (503) the feature store did not answer (down, hung, or too slow)
└── StoredDataError (500) stored data that cannot be right (a corrupt uplift counter)
"""

from __future__ import annotations

from dataclasses import dataclass


class NbaError(Exception):
    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def body(self) -> dict[str, object]:
        error: dict[str, object] = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        return {"error": error}

    def headers(self) -> dict[str, str] | None:
        """HTTP headers the answer carries beside the body."""
        return None


INTERNAL_ERROR = NbaError("internal error")  # what a caller sees of an unexpected failure


class BadRequest(NbaError):
    status = 422
    code = "invalid_request"


class NotFound(NbaError):
    status = 404
    code = "not_found"


class Unauthorized(NbaError):
    status = 401
    code = "unauthorized"

    def headers(self) -> dict[str, str] | None:
        return {"WWW-Authenticate": "Bearer"}


class Forbidden(NbaError):
    status = 403
    code = "forbidden"


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a catalogue, located by file and line (or by field for the API)."""

    source: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.message}"


class CatalogueError(NbaError):
    status = 422
    code = "invalid_catalogue"

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems

    def body(self) -> dict[str, object]:
        first = self.problems[0].message if self.problems else ""
        return {
            "error": {
                "code": self.code,
                "field": first.split(":", 1)[0] if ":" in first else "body",
                "message": f"{len(self.problems)} problem(s): {self.message}",
                "problems": [
                    {"source": p.source, "line": p.line, "message": p.message}
                    for p in self.problems
                ],
            }
        }


class StoreUnavailable(NbaError):
    """A call that needs the feature store found it down, hung or too slow. Decisions
    never raise it (they answer from the fallback path); routes that read or write the
    store itself (the customer view, erasure) do, and the caller may try again. The
    answer names the store; the log line (``str``) adds the backend's error."""

    status = 503
    code = "store_unavailable"
    retry_after_s = 1

    def headers(self) -> dict[str, str] | None:
        return {"Retry-After": str(self.retry_after_s)}

    def __str__(self) -> str:
        cause = self.__cause__
        return self.message if cause is None else f"{self.message}: {type(cause).__name__}: {cause}"


class StoredDataError(NbaError):
    """Data read from the store that cannot be right whatever the traffic was (a counter
    that is negative or not a number): the answer names it instead of failing blindly,
    and an operator repairs or deletes it."""

    status = 500
    code = "invalid_stored_data"
