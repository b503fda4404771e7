"""API keys with scopes. Keys are kept only as SHA-256 digests and compared in
constant time, so neither memory dumps nor timing reveal a key; keys are never logged."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence

from engine.errors import Forbidden, Unauthorized


class KeyRing:
    def __init__(self, keys: Mapping[str, Sequence[str]]) -> None:
        if not keys:
            raise ValueError("the API never runs without keys")
        self._entries = [(_digest(key), frozenset(scopes)) for key, scopes in keys.items()]

    def scopes(self, authorization: str | None) -> frozenset[str]:
        """The scopes of the presented bearer key; Unauthorized if there is none."""
        if not authorization or not authorization.lower().startswith("bearer "):
            raise Unauthorized("missing bearer key: send 'Authorization: Bearer <key>'")
        presented = _digest(authorization[7:].strip())
        found: frozenset[str] | None = None
        for digest, scopes in self._entries:  # no early exit: same work for every key
            if hmac.compare_digest(digest, presented):
                found = scopes
        if found is None:
            raise Unauthorized("unknown API key")
        return found

    def check(self, authorization: str | None, scope: str) -> None:
        scopes = self.scopes(authorization)
        if scope not in scopes and "admin" not in scopes:
            raise Forbidden(f"this key lacks the '{scope}' scope")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
