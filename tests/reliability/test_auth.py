"""Every route of the OpenAPI schema is closed without a valid key (401) and to a key
without its scope (403); only health, readiness and metrics are open. Without
``NBA_API_KEYS`` an admin key is generated, printed once, kept under ``NBA_DATA_DIR``
and never logged again (contract §2, §3)."""

from __future__ import annotations

import stat
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import KEYS, Running, auth
from tests.reliability._support import api_env, environment_without, nba, stop, wait_ready

pytestmark = pytest.mark.integration

# The scope each route needs (engine/api.py, contract §3).
SCOPE = {
    ("post", "/v1/decisions"): "decide",
    ("post", "/v1/decisions/batch"): "decide",
    ("post", "/v1/responses"): "respond",
    ("post", "/v1/events"): "ingest",
    ("get", "/v1/customers/{customer_id}"): "read",
    ("delete", "/v1/customers/{customer_id}"): "admin",
    ("get", "/v1/actions"): "read",
    ("get", "/v1/actions/{action_id}"): "read",
    ("put", "/v1/actions/{action_id}"): "admin",
    ("delete", "/v1/actions/{action_id}"): "admin",
    ("get", "/v1/reports/uplift"): "read",
}
OPEN = {("get", "/healthz"), ("get", "/readyz"), ("get", "/metrics")}
# Harmless, well-formed bodies: a refusal must come from the key, not from the body.
BODIES: dict[str, Any] = {
    "/v1/decisions": {"customer_id": "auth-probe", "channel": "web"},
    "/v1/decisions/batch": {"requests": [{"customer_id": "auth-probe", "channel": "web"}]},
    "/v1/responses": {
        "action_id": "summer-shoes-10",
        "customer_id": "auth-probe",
        "outcome": "impression",
    },
    "/v1/events": {
        "event_id": "auth-probe-1",
        "customer_id": "auth-probe",
        "type": "page_view",
        "timestamp": "2026-01-01T00:00:00Z",
    },
    "/v1/actions/{action_id}": {"kind": "banner", "name": "x", "channels": ["web"]},
}


def lacking(scope: str) -> str:
    """A configured key that has neither ``scope`` nor admin."""
    return next(k for k, s in KEYS.items() if scope not in s and "admin" not in s)


def operations(base_url: str) -> list[tuple[str, str, dict[str, Any]]]:
    schema = httpx.get(f"{base_url}/openapi.json", timeout=5).json()
    return [
        (method, path, op)
        for path, item in schema["paths"].items()
        for method, op in item.items()
        if method in {"get", "put", "post", "delete", "patch"}
    ]


def call(base_url: str, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    url = base_url + path.replace("{customer_id}", "auth-probe").replace(
        "{action_id}", "no-such-action-for-auth"
    )
    body = BODIES.get(path)
    return httpx.request(method, url, json=body, headers=headers, timeout=5)


def test_every_route_of_the_schema_needs_a_key_with_its_scope(running: Running) -> None:
    seen = set()
    problems: list[str] = []
    for method, path, op in operations(running.base_url):
        seen.add((method, path))
        if (method, path) in OPEN:
            reply = call(running.base_url, method, path, {})
            if reply.status_code != 200:
                problems.append(f"{method} {path} open route answered {reply.status_code}")
            continue
        assert (method, path) in SCOPE, f"route {method} {path} has no known scope"
        assert op.get("security"), f"{method} {path} does not declare its bearer security"
        scope = SCOPE[(method, path)]
        for label, headers, want in (
            ("no key", {}, 401),
            ("unknown key", auth("not-a-known-key-123"), 401),
            ("malformed header", {"Authorization": "Basic dGVzdDp0ZXN0"}, 401),
            (f"key without {scope}", auth(lacking(scope)), 403),
        ):
            reply = call(running.base_url, method, path, headers)
            if reply.status_code != want:
                problems.append(f"{method} {path} with {label}: {reply.status_code}, want {want}")
                continue
            error = reply.json()["error"]
            if not error.get("message") or "Traceback" in reply.text:
                problems.append(f"{method} {path} with {label}: body {reply.text[:200]}")
    assert not problems, "\n".join(problems)
    assert seen >= OPEN


def test_401_names_the_bearer_scheme(running: Running) -> None:
    reply = httpx.post(f"{running.base_url}/v1/decisions", json=BODIES["/v1/decisions"])
    assert reply.status_code == 401
    assert reply.headers.get("www-authenticate", "").lower() == "bearer"


@pytest.mark.parametrize("path", ["/v1/decisions", "/v1/responses", "/v1/decisions/batch"])
def test_no_key_is_401_even_with_a_malformed_body(running: Running, path: str) -> None:
    reply = httpx.post(
        running.base_url + path,
        content=b"{not json",
        headers={"Content-Type": "application/json"},
        timeout=5,
    )
    assert reply.status_code == 401, reply.text


def test_an_unknown_route_reveals_nothing_and_answers_in_the_error_shape(
    running: Running,
) -> None:
    anonymous = httpx.get(f"{running.base_url}/v1/nothing-here", timeout=5)
    assert anonymous.status_code in (401, 404)  # closed before routing, or not found
    known = httpx.get(f"{running.base_url}/v1/nothing-here", headers=auth(lacking("read")))
    assert known.status_code == 404, known.text
    for reply in (anonymous, known):
        assert reply.json()["error"]["message"], reply.text
        assert "Traceback" not in reply.text


@pytest.mark.slow
def test_without_keys_an_admin_key_is_generated_printed_once_and_kept(
    running: Running, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    # Unbuffered here: the buffering problem has its own test below.
    env = {**environment_without(api_env(running, data), "NBA_API_KEYS"), "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "serve.log"
    base_url = f"http://127.0.0.1:{env['NBA_PORT']}"

    def serve_once() -> str:
        """Start, prove the generated key works, stop; returns the key file's key."""
        process = nba(["serve"], env, log)
        try:
            wait_ready(base_url, process, log)
            key = (data / "admin.key").read_text().strip()
            reply = httpx.post(
                f"{base_url}/v1/decisions", json=BODIES["/v1/decisions"], headers=auth(key)
            )
            assert reply.status_code == 200, reply.text
            assert (
                httpx.post(f"{base_url}/v1/decisions", json=BODIES["/v1/decisions"]).status_code
                == 401
            )
            assert httpx.get(f"{base_url}/v1/actions", headers=auth(key)).status_code == 200
            return key
        finally:
            stop(process)

    first = serve_once()
    key_file = data / "admin.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(first) >= 24
    text = log.read_text(errors="replace")
    assert text.count(first) == 1, "the generated key is printed exactly once"
    printed = next(line for line in text.splitlines() if first in line)
    assert "admin.key" in printed  # says where it is kept
    second = serve_once()  # same data dir: the same key, not printed again
    assert second == first
    assert log.read_text(errors="replace").count(first) == 1


@pytest.mark.slow
def test_generated_key_is_visible_in_the_log_while_the_server_runs(
    running: Running, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    env = environment_without(api_env(running, data), "NBA_API_KEYS", "PYTHONUNBUFFERED")
    log = tmp_path / "serve.log"
    process = nba(["serve"], env, log)
    try:
        wait_ready(f"http://127.0.0.1:{env['NBA_PORT']}", process, log)
        key = (data / "admin.key").read_text().strip()
        time.sleep(0.5)
        running_log = log.read_text(errors="replace")
    finally:
        stop(process)
    after_stop = log.read_text(errors="replace")
    assert key in running_log, f"not in the log while running; after the stop: {key in after_stop}"
