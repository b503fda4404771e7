"""The call-centre desk page end to end, in headless Chromium against the real stack.

The agent signs in with an API key, finds a customer, sees the next best activities with
their reasons, accepts one and sees the history gain the response (it travels API ->
broker -> stream worker -> Redis). Errors must read as messages, never as a blank page.

Until the API serves ``/desk`` itself, the test serves ``engine/static/desk`` the way the
API will (Starlette ``StaticFiles(html=True)`` mounted at ``/desk``) from a small local
server that forwards ``/v1/*`` to the real API.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from engine.embedded import free_port
from engine.http_protocol import LeanHttpProtocol
from tests.conftest import ROOT, Running, auth

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        "the desk test needs Debian's Chromium at /usr/bin/chromium: "
        "apt-get update && apt-get install -y chromium",
        allow_module_level=True,
    )
try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    pytest.skip(
        "the desk test needs the playwright package: pip install playwright "
        "(no 'playwright install': it drives /usr/bin/chromium)",
        allow_module_level=True,
    )

pytestmark = pytest.mark.integration

DESK = ROOT / "engine" / "static" / "desk"
ARTIFACTS = ROOT / "tests" / "artifacts"
ADMIN_KEY = "test-admin-key-0001"
READ_ONLY_KEY = "test-read-key-00001"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PROXIED_HEADERS = ("authorization", "content-type", "accept")
PROFILE = {
    "consent_marketing": True,
    "age": 40,
    "value_class": "A",
    "segment": "family",
    "churn_risk": 0.8,
    "open_complaint": False,
}


# ---------------------------------------------------------------- serving the page


def _desk_app(upstream: str) -> Starlette:
    """The desk folder mounted as the API will mount it, plus a pass-through for /v1."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with httpx.AsyncClient(base_url=upstream, timeout=15) as client:
            app.state.client = client
            yield

    async def forward(request: Request) -> Response:
        client: httpx.AsyncClient = request.app.state.client
        headers = {k: v for k, v in request.headers.items() if k.lower() in PROXIED_HEADERS}
        reply = await client.request(
            request.method,
            request.url.path,
            params=request.url.query,
            content=await request.body(),
            headers=headers,
        )
        return Response(
            reply.content,
            status_code=reply.status_code,
            media_type=reply.headers.get("content-type"),
        )

    return Starlette(
        routes=[
            Route("/v1/{path:path}", forward, methods=["GET", "POST", "PUT", "DELETE"]),
            Mount("/desk", StaticFiles(directory=DESK, html=True)),
        ],
        lifespan=lifespan,
    )


@contextlib.contextmanager
def _serve(app: Starlette) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
            http=LeanHttpProtocol,  # what `nba serve` serves with
        )
    )
    thread = threading.Thread(target=server.run, name="desk-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the desk test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


@pytest.fixture(scope="module")
def desk_url(running: Running) -> Iterator[str]:
    """The desk page: served by the API itself once it mounts it, else by a local server."""
    probe = httpx.get(f"{running.base_url}/desk/", timeout=5)
    if probe.status_code == 200 and "desk.js" in probe.text:
        yield f"{running.base_url}/desk/"
        return
    assert probe.status_code == 404, f"unexpected /desk/ answer {probe.status_code}"
    with _serve(_desk_app(running.base_url)) as origin:
        yield f"{origin}/desk/"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()


# ---------------------------------------------------------------- helpers


def _seed_customer(base_url: str, *, contact: bool = False, **profile: Any) -> str:
    """A customer likely to leave, with some browsing (and a past call), sent through the
    API; returns once the customer view shows the profile (sent last, so all arrived)."""
    customer = f"desk-{uuid.uuid4().hex[:10]}"
    now = datetime.now(UTC).isoformat()

    def event(kind: str, **fields: Any) -> dict[str, Any]:
        base = {"event_id": f"e-{uuid.uuid4().hex}", "customer_id": customer, "type": kind}
        return {**base, **fields, "timestamp": now}

    events = [event("page_view", category=c) for c in ("garden", "garden", "kitchen")]
    if contact:
        attributes = {"channel": "call_centre", "topic": "billing question", "outcome": "answered"}
        events.append(event("contact", attributes=attributes))
    events.append(event("profile", attributes={**PROFILE, **profile}))
    reply = httpx.post(f"{base_url}/v1/events", json=events, headers=auth(ADMIN_KEY), timeout=5)
    assert reply.status_code == 202, reply.text
    deadline = time.monotonic() + 45
    while _customer(base_url, customer)["profile"].get("segment") != PROFILE["segment"]:
        assert time.monotonic() < deadline, "the profile event never reached the store"
        time.sleep(0.25)
    return customer


def _customer(base_url: str, customer: str) -> dict[str, Any]:
    reply = httpx.get(f"{base_url}/v1/customers/{customer}", headers=auth(ADMIN_KEY), timeout=5)
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def _open(browser: Browser, url: str, **context: Any) -> tuple[Page, list[str]]:
    """A fresh page (own storage) that collects uncaught script errors."""
    page = browser.new_context(**context).new_page()
    page.set_default_timeout(15_000)
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.goto(url)
    return page, problems


def _sign_in(page: Page, key: str) -> None:
    expect(page.locator("#login")).to_be_visible()
    page.fill("#api-key", key)
    page.press("#api-key", "Enter")
    expect(page.locator("#customer-id")).to_be_visible()


def _search(page: Page, customer: str) -> None:
    page.fill("#customer-id", customer)
    page.press("#customer-id", "Enter")


def _screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


# ---------------------------------------------------------------- tests


def test_agent_finds_customer_sees_reasons_and_records_an_accept(
    browser: Browser, desk_url: str, running: Running
) -> None:
    customer = _seed_customer(running.base_url)
    page, problems = _open(browser, desk_url, viewport={"width": 1280, "height": 900})

    _sign_in(page, ADMIN_KEY)
    _search(page, customer)

    # The single customer view.
    expect(page.locator("#customer-title")).to_have_text(customer)
    profile = page.locator("#profile")
    expect(profile).to_contain_text("family")
    expect(profile).to_contain_text("40-49")
    expect(profile).to_contain_text("class A")
    expect(page.locator("#consents [data-consent=marketing]")).to_have_class("chip ok")
    expect(page.locator("#complaint")).to_be_hidden()

    # The next best activities, each with its reasons.
    actions = page.locator("[data-testid=action]")
    expect(actions.first).to_be_visible()
    assert 1 <= actions.count() <= 3
    first = actions.first
    action_id = first.get_attribute("data-action-id")
    assert action_id
    expect(first.locator("[data-testid=action-name]")).not_to_be_empty()
    expect(first.locator("[data-testid=factors]")).to_contain_text("propensity")
    expect(first.locator("[data-testid=factors]")).to_contain_text("lever")
    expect(first.locator("[data-testid=contact-policy]")).to_contain_text("shown")
    expect(page.locator("[data-testid=action] [data-testid=rules]").first).to_contain_text("✓")
    ids = [actions.nth(i).get_attribute("data-action-id") for i in range(actions.count())]
    assert "retention-save" in ids, ids  # churn risk 0.8: the save offer must be suggested

    # One click records the outcome; the history shows it once the worker stored it.
    assert page.locator("[data-testid=history-row][data-outcome=accept]").count() == 0
    first.locator("[data-testid=accept]").click()
    expect(page.locator("#status")).to_contain_text("Accepted", timeout=15_000)
    accepted = page.locator(
        f"[data-testid=history-row][data-outcome=accept][data-action-id='{action_id}']"
    )
    if accepted.count() == 0:  # the worker was slower than the page's 5 s poll
        page.click("#refresh")
    expect(accepted).to_have_count(1, timeout=15_000)
    expect(accepted).to_contain_text("response")
    counter = page.locator(f"#counters [data-testid=counter-row][data-action-id='{action_id}']")
    expect(counter.locator("td[data-label=Accepted]")).to_have_text("1")

    stored = _customer(running.base_url, customer)["history"]
    assert any(h["outcome"] == "accept" and h["action_id"] == action_id for h in stored)
    assert all(h.get("channel") == "call_centre" for h in stored if h["type"] == "response")
    expect(page.locator("#error")).to_be_hidden()
    _screenshot(page, "desk.png")

    # A field rep on a phone, for a customer with a past call: one column, no sideways
    # scrolling, the activities first.
    other = _seed_customer(running.base_url, contact=True)
    phone, phone_problems = _open(
        browser,
        desk_url,
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    _sign_in(phone, ADMIN_KEY)
    _search(phone, other)
    expect(phone.locator("[data-testid=action]").first).to_be_visible()
    call = phone.locator("[data-testid=history-row][data-type=contact]")
    expect(call).to_contain_text("billing question")
    expect(call).to_contain_text("answered")
    _screenshot(phone, "desk-phone.png")
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the phone layout scrolls sideways ({width}px)"
    assert problems == [] and phone_problems == []


def test_errors_read_as_messages_and_the_key_is_kept_until_sign_out(
    browser: Browser, desk_url: str, running: Running
) -> None:
    customer = _seed_customer(running.base_url)
    page, problems = _open(browser, desk_url, viewport={"width": 1024, "height": 800})
    error = page.locator("#error")

    # 401: an unknown key sends the agent back to sign in, with the reason.
    _sign_in(page, "not-a-real-key")
    _search(page, customer)
    expect(error).to_contain_text("not accepted")
    expect(page.locator("#login")).to_be_visible()
    assert page.evaluate("localStorage.getItem('nba.desk.apiKey')") is None

    # 403: a read-only key shows the customer, and says why no activities are shown.
    _sign_in(page, READ_ONLY_KEY)
    _search(page, customer)
    expect(error).to_contain_text("may not do this")
    expect(error).to_contain_text("decide")
    expect(page.locator("#profile")).to_contain_text("family")
    expect(page.locator("[data-testid=no-actions]")).to_be_visible()

    # Sign out clears the key; the next key is kept across a reload.
    page.click("#sign-out")
    expect(page.locator("#login")).to_be_visible()
    assert page.evaluate("localStorage.getItem('nba.desk.apiKey')") is None
    _sign_in(page, ADMIN_KEY)
    page.reload()
    expect(page.locator("#customer-id")).to_be_visible()
    expect(page.locator("#login")).to_be_hidden()

    # 422: an id the API refuses names the problem.
    _search(page, "has a space")
    expect(error).to_contain_text("refused")
    expect(error).to_contain_text("customer_id")

    # Empty search: a hint, no request.
    _search(page, "   ")
    expect(error).to_have_text("Enter a customer id.")

    # Network down: a message, and the page stays usable.
    page.route("**/v1/**", lambda route: route.abort())
    _search(page, customer)
    expect(error).to_contain_text("Cannot reach the decision service")
    page.unroute("**/v1/**")
    _search(page, customer)
    expect(page.locator("[data-testid=action]").first).to_be_visible()
    expect(error).to_be_hidden()

    # A decline is recorded too, and the refreshed suggestions respect its suppression.
    save = page.locator("[data-testid=action][data-action-id=retention-save]")
    save.locator("[data-testid=decline]").click()
    declined = page.locator(
        "[data-testid=history-row][data-outcome=decline][data-action-id=retention-save]"
    )
    expect(page.locator("#status")).to_contain_text("Declined", timeout=15_000)
    if declined.count() == 0:  # the worker was slower than the page's 5 s poll
        page.click("#refresh")
    expect(declined).to_have_count(1, timeout=15_000)
    expect(save).to_have_count(0)
    paused = page.locator(
        "[data-testid=excluded][data-action-id=retention-save]"
        "[data-reason='contact_policy:suppressed_after_decline']"
    )
    expect(paused).to_contain_text("declined recently")
    assert problems == []


def test_an_open_complaint_is_highlighted_and_gets_service_first(
    browser: Browser, desk_url: str, running: Running
) -> None:
    customer = _seed_customer(running.base_url, open_complaint=True)
    page, problems = _open(browser, desk_url, viewport={"width": 1280, "height": 900})
    _sign_in(page, ADMIN_KEY)
    _search(page, customer)
    expect(page.locator("#complaint")).to_be_visible()
    expect(page.locator("#profile [data-field=Complaint] dd")).to_have_text("open")
    first = page.locator("[data-testid=action]").first
    expect(first).to_have_attribute("data-action-id", "complaint-callback")
    expect(page.locator("[data-testid=action][data-action-id=retention-save]")).to_have_count(0)
    assert problems == []


def test_assets_are_served_with_their_types(desk_url: str) -> None:
    for name, kind in (("", "text/html"), ("desk.js", "javascript"), ("desk.css", "text/css")):
        reply = httpx.get(desk_url + name, timeout=5)
        assert reply.status_code == 200, name
        assert kind in reply.headers["content-type"], (name, reply.headers["content-type"])
