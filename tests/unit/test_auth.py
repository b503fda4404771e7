from __future__ import annotations

import pytest

from engine.auth import KeyRing
from engine.errors import Forbidden, Unauthorized

RING = KeyRing({"key-for-decisions": ["decide"], "key-for-admins": ["admin"]})


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer", "Bearer wrong-key"])
def test_missing_or_unknown_key_is_unauthorized(header: str | None) -> None:
    with pytest.raises(Unauthorized):
        RING.check(header, "decide")


def test_scope_is_enforced_and_admin_holds_every_scope() -> None:
    RING.check("Bearer key-for-decisions", "decide")
    with pytest.raises(Forbidden):
        RING.check("Bearer key-for-decisions", "read")
    for scope in ("decide", "respond", "ingest", "read", "admin"):
        RING.check("Bearer key-for-admins", scope)


def test_the_api_never_runs_without_keys() -> None:
    with pytest.raises(ValueError):
        KeyRing({})
