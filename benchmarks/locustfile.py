"""Locust load profile of the decision API: four callers, each at a fixed offered rate.

Run by ``nba loadtest`` (``nba/loadtest.py``), or by hand::

    NBA_LOADTEST_API_KEY=... NBA_LOADTEST_WEB_RATE=500 \\
        locust -f benchmarks/locustfile.py --headless -u 40 -r 20 -t 60s \\
        --host http://127.0.0.1:8000

The four user classes, one request name prefix each:

``web``
    page views on the website (and, for ``NBA_LOADTEST_SHOP_SHARE`` of them, the shop's
    screens): ``POST /v1/decisions`` for home_hero, product_sidebar, checkout_cross_sell,
    search_results with the page context (page_category, product_id, query, device).
``desk``
    a call-centre agent opening a customer: a ``call_centre`` decision with ``explain``,
    then ``GET /v1/customers/{id}``, and now and then the agent's accept or decline.
``email``
    an email system at send time: ``POST /v1/decisions/batch`` of ``NBA_LOADTEST_EMAIL_BATCH``
    newsletter requests for consecutive customers.
``responses``
    impressions and clicks on recent web decisions: ``POST /v1/responses``.

Pacing: every user keeps an absolute schedule of arrivals (Poisson by default, or evenly
spaced), so the offered rate does not depend on how fast the server answers: a user that
falls behind its schedule fires its next requests at once to catch up (arrivals more than
``NBA_LOADTEST_MAX_LAG_S`` late are dropped and counted). The lateness of each start is
recorded, so a run shows whether the load generator kept its schedule.

Environment (every variable optional):

==============================  =======================================================
``NBA_LOADTEST_HOST``           API base URL when Locust gets no ``--host``
``NBA_LOADTEST_API_KEY``        bearer key (scopes decide, respond, read)
``NBA_LOADTEST_WEB_RATE``       page-view decisions/s (default 100)
``NBA_LOADTEST_DESK_RATE``      agent sessions/s (default 1% of the web rate)
``NBA_LOADTEST_EMAIL_RATE``     email batches/s (default: 10% of the web rate in decisions)
``NBA_LOADTEST_EMAIL_BATCH``    requests per batch (default 100)
``NBA_LOADTEST_RESPONSE_RATE``  responses/s (default 10% of the web rate)
``NBA_LOADTEST_<CLASS>_USERS``  users of a class (default: enough for its rate)
``NBA_LOADTEST_SHOP_SHARE``     share of page views from the shop channel (default 0.1)
``NBA_LOADTEST_WEB_PLACEMENTS`` the web placements page views ask for, comma-separated
                                (default all four: home_hero, product_sidebar,
                                search_results, checkout_cross_sell), in their shares
``NBA_LOADTEST_CUSTOMERS``      customers ``c-00000`` … of the demo world (default 3000)
``NBA_LOADTEST_ARRIVALS``       ``poisson`` or ``uniform`` (default poisson)
``NBA_LOADTEST_MAX_LAG_S``      how late an arrival may start before it is dropped (1.0)
``NBA_LOADTEST_IDLE_CLOSE_S``   a user that will sleep longer closes its connection (4.0,
                                below uvicorn's 5 s keep-alive)
``NBA_LOADTEST_DETAIL_DIR``     where each Locust process writes ``detail-<pid>.json``:
                                exact latency histograms (10 µs steps), schedule
                                lateness, fallbacks, measured after spawning completed
==============================  =======================================================
"""

from __future__ import annotations

import collections
import math
import os
import random
import time
from pathlib import Path
from typing import Any

import orjson
from locust import FastHttpUser, events, task
from locust_detail import Detail  # beside this file

# ---- configuration ------------------------------------------------------------------


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else default


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


# Shares of the web rate at which the other callers run (see nba/load_offer.py).
DESK_SHARE = 0.01
EMAIL_DECISION_SHARE = 0.1
RESPONSE_SHARE = 0.1
# Highest rate one simulated user is asked to keep: its mean gap between arrivals stays
# several times the latency being measured, so one user is never its own bottleneck.
PER_USER_RATE = {"web": 20.0, "desk": 2.0, "email": 0.5, "responses": 5.0}

API_KEY = os.environ.get("NBA_LOADTEST_API_KEY", "")
WEB_RATE = _float("NBA_LOADTEST_WEB_RATE", 100.0)
EMAIL_BATCH = max(1, min(_int("NBA_LOADTEST_EMAIL_BATCH", 100), 1000))
RATES = {
    "web": WEB_RATE,
    "desk": _float("NBA_LOADTEST_DESK_RATE", WEB_RATE * DESK_SHARE),
    "email": _float("NBA_LOADTEST_EMAIL_RATE", WEB_RATE * EMAIL_DECISION_SHARE / EMAIL_BATCH),
    "responses": _float("NBA_LOADTEST_RESPONSE_RATE", WEB_RATE * RESPONSE_SHARE),
}


def users_for(kind: str, rate: float) -> int:
    return max(1, math.ceil(rate / PER_USER_RATE[kind]))


USERS = {
    kind: _int(f"NBA_LOADTEST_{kind.upper()}_USERS", users_for(kind, rate))
    for kind, rate in RATES.items()
}
SHOP_SHARE = _float("NBA_LOADTEST_SHOP_SHARE", 0.1)
CUSTOMERS = max(1, _int("NBA_LOADTEST_CUSTOMERS", 3000))
POISSON = os.environ.get("NBA_LOADTEST_ARRIVALS", "poisson").strip().lower() != "uniform"
MAX_LAG_S = _float("NBA_LOADTEST_MAX_LAG_S", 1.0)
IDLE_CLOSE_S = _float("NBA_LOADTEST_IDLE_CLOSE_S", 4.0)
DETAIL_DIR = os.environ.get("NBA_LOADTEST_DETAIL_DIR", "").strip()
HOST = os.environ.get("NBA_LOADTEST_HOST", "http://127.0.0.1:8000")

# ---- the demo world's vocabulary ------------------------------------------------------

CATEGORIES = ("shoes", "bags", "electronics", "home", "sports", "beauty")
DEVICES = ("mobile", "mobile", "mobile", "desktop", "tablet")
QUERIES = {
    "shoes": ("running shoes", "sandals", "boots"),
    "bags": ("backpack", "leather bag", "travel bag"),
    "electronics": ("headphones", "phone charger", "smart watch"),
    "home": ("bed linen", "coffee maker", "lamp"),
    "sports": ("yoga mat", "tennis racket", "bike helmet"),
    "beauty": ("face cream", "perfume", "shampoo"),
}
# placement, weight, actions asked for
ALL_WEB_PLACEMENTS = (
    ("home_hero", 0.35, 1),
    ("product_sidebar", 0.35, 3),
    ("search_results", 0.2, 3),
    ("checkout_cross_sell", 0.1, 2),
)


def web_placements(raw: str) -> tuple[tuple[str, float, int], ...]:
    """The placements named in ``raw`` (comma-separated; empty: all), keeping their
    shares and the actions they ask for; an unknown name is refused."""
    names = [name.strip() for name in raw.split(",") if name.strip()]
    if not names:
        return ALL_WEB_PLACEMENTS
    known = {entry[0]: entry for entry in ALL_WEB_PLACEMENTS}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(
            f"NBA_LOADTEST_WEB_PLACEMENTS: unknown placement(s) {unknown}; known: {list(known)}"
        )
    return tuple(known[name] for name in dict.fromkeys(names))


WEB_PLACEMENTS = web_placements(os.environ.get("NBA_LOADTEST_WEB_PLACEMENTS", ""))
SHOP_PLACEMENTS = ("till_screen", "shelf_display")
DESK_REASONS = ("billing", "complaint", "sales", "service", "contract")
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


def describe(response: Any) -> str:
    """A failure in a line: the status and the start of the body, or the network error."""
    if not response.status_code:
        return f"no answer: {response.error!r}"[:300]
    return f"HTTP {response.status_code}: {(response.text or '')[:200]}"


def _json(value: Any) -> Any:
    """The request body as bytes (geventhttpclient sends them as they are)."""
    return orjson.dumps(value)


def customer_id(rng: random.Random) -> str:
    return f"c-{rng.randrange(CUSTOMERS):05d}"


def product_id(rng: random.Random, category: str) -> str:
    return f"p-{category}-{rng.randrange(500):03d}"


# ---- measurement ------------------------------------------------------------------------


DETAIL = Detail({"rates": RATES, "users": USERS, "email_batch": EMAIL_BATCH, "poisson": POISSON})


def _on_request(name: str, response_time: float, exception: Any, **_: Any) -> None:
    slot = DETAIL.second(time.time())
    kind = name.split(":", 1)[0]
    slot["requests"][kind] += 1
    if exception is None:
        DETAIL.latency[name][round(response_time * 100)] += 1
        tenths = round(response_time * 10)
        slot["all"][tenths] += 1
        if name == "web: POST /v1/decisions":
            slot["web"][tenths] += 1
    else:
        DETAIL.failures[name] += 1
        DETAIL.failures_all_run[name] += 1
        slot["failures"][kind] += 1


def _mark(what: str) -> None:
    """An empty file that tells ``nba loadtest`` where the run is (it scrapes the server)."""
    if DETAIL_DIR:
        folder = Path(DETAIL_DIR)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{what}-{os.getpid()}").touch()


def _on_spawned(user_count: int, **_: Any) -> None:
    DETAIL.reset()
    _mark("spawned")


def _on_stopping(**_: Any) -> None:
    DETAIL.until = time.time()
    _mark("stopping")


def _on_cpu_warning(**_: Any) -> None:
    DETAIL.cpu_warnings += 1


def _on_quitting(**_: Any) -> None:
    if DETAIL_DIR:
        folder = Path(DETAIL_DIR)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"detail-{os.getpid()}.json").write_bytes(
            orjson.dumps(DETAIL.dump(), option=orjson.OPT_NON_STR_KEYS)
        )


for _event, _listener in (
    (events.request, _on_request),
    (events.spawning_complete, _on_spawned),
    (events.test_stopping, _on_stopping),
    (events.cpu_warning, _on_cpu_warning),
    (events.quitting, _on_quitting),
):
    _event.add_listener(_listener)


# Recent web decisions that the responses class answers (shared within one process).
SHOWN: collections.deque[tuple[str, str, str]] = collections.deque(maxlen=2000)


# ---- users ------------------------------------------------------------------------------


class PacedUser(FastHttpUser):
    """A user on an absolute schedule of arrivals at ``rate / fixed_count`` per second."""

    abstract = True
    host = HOST  # Locust's --host wins
    kind = ""
    network_timeout = 10.0
    connection_timeout = 5.0
    concurrency = 1  # one greenlet per user: one connection, kept alive

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rng = random.Random()
        self.mean_gap = self.fixed_count / RATES[self.kind]
        self.due: float | None = None
        self.headers = {**JSON_HEADERS, "Authorization": f"Bearer {API_KEY}"}

    def gap(self) -> float:
        return self.rng.expovariate(1.0 / self.mean_gap) if POISSON else self.mean_gap

    def wait_time(self) -> float:
        now = time.perf_counter()
        if self.due is None:  # the first arrival ran at spawn; start at a random phase
            self.due = now + self.rng.uniform(0.0, self.mean_gap)
        else:
            self.due += self.gap()
        late = now - self.due
        if late > MAX_LAG_S:  # too far behind: drop what cannot be caught up
            missed = int(late / self.mean_gap)
            DETAIL.dropped[self.kind] += missed
            self.due += missed * self.mean_gap
        wait = max(0.0, self.due - now)
        if wait > IDLE_CLOSE_S:
            # The server drops idle keep-alive connections (uvicorn after 5 s); a POST on
            # a connection it is closing fails and is, rightly, not retried. A caller
            # that waits that long opens a new connection instead.
            self.client.client.close()
        return wait

    def arrive(self) -> None:
        """Record how late this arrival starts against its schedule."""
        DETAIL.arrivals[self.kind] += 1
        if self.due is not None:
            late_ms = max(0.0, (time.perf_counter() - self.due) * 1000.0)
            DETAIL.lateness[self.kind][int(late_ms)] += 1

    def post(self, name: str, path: str, body: dict[str, Any]) -> Any:
        """POST JSON; the answer's body as a dict, or None (a failure is already counted)."""
        with self.client.post(
            path,
            data=_json(body),
            headers=self.headers,
            name=name,
            catch_response=True,
        ) as response:
            if response.status_code not in (200, 202):
                response.failure(describe(response))
                return None
            try:
                return orjson.loads(response.content)
            except orjson.JSONDecodeError:
                response.failure("the answer is not JSON")
                return None

    def decide(self, name: str, request: dict[str, Any]) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self.post(name, "/v1/decisions", request)
        if result is not None and result.get("fallback"):
            DETAIL.fallbacks[name] += 1
        return result


class WebVisitor(PacedUser):
    """Page views: one decision per placement shown."""

    kind = "web"
    abstract = RATES["web"] <= 0  # a rate of 0 leaves the caller out
    fixed_count = USERS["web"]

    @task
    def page_view(self) -> None:
        self.arrive()
        rng = self.rng
        customer = customer_id(rng)
        category = rng.choice(CATEGORIES)
        device = rng.choice(DEVICES)
        request: dict[str, Any]
        if rng.random() < SHOP_SHARE:
            request = {
                "customer_id": customer,
                "channel": "shop",
                "placement": rng.choice(SHOP_PLACEMENTS),
                "context": {"page_category": category, "device": "kiosk"},
            }
            self.decide("web: POST /v1/decisions (shop)", request)
            return
        placement, limit = rng.choices(
            [(p, n) for p, _, n in WEB_PLACEMENTS], [w for _, w, _ in WEB_PLACEMENTS]
        )[0]
        context: dict[str, Any] = {"device": device}
        if placement == "home_hero":
            context["page_category"] = "landing"
        elif placement == "product_sidebar":
            context.update(page_category=category, product_id=product_id(rng, category))
        elif placement == "search_results":
            context.update(page_category=category, query=rng.choice(QUERIES[category]))
        else:
            context.update(page_category="checkout", product_id=product_id(rng, category))
        request = {
            "customer_id": customer,
            "channel": "web",
            "placement": placement,
            "context": context,
            "limit": limit,
        }
        result = self.decide("web: POST /v1/decisions", request)
        if result and result.get("actions"):
            action = result["actions"][0]
            SHOWN.append((result["decision_id"], action["action_id"], customer))


class DeskAgent(PacedUser):
    """A call-centre agent: the explained next-best-activity, the customer view, an outcome."""

    kind = "desk"
    abstract = RATES["desk"] <= 0  # a rate of 0 leaves the caller out
    fixed_count = USERS["desk"]
    RESPOND_SHARE = 0.3

    @task
    def open_customer(self) -> None:
        self.arrive()
        rng = self.rng
        customer = customer_id(rng)
        result = self.decide(
            "desk: POST /v1/decisions (explain)",
            {
                "customer_id": customer,
                "channel": "call_centre",
                "placement": "agent_desk",
                "context": {"reason": rng.choice(DESK_REASONS)},
                "limit": 3,
                "explain": True,
            },
        )
        with self.client.get(
            f"/v1/customers/{customer}",
            headers=self.headers,
            name="desk: GET /v1/customers/{id}",
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(describe(response))
        if result and result.get("actions") and rng.random() < self.RESPOND_SHARE:
            action = result["actions"][0]
            self.post(
                "desk: POST /v1/responses",
                "/v1/responses",
                {
                    "decision_id": result["decision_id"],
                    "action_id": action["action_id"],
                    "customer_id": customer,
                    "outcome": "accept" if rng.random() < 0.6 else "decline",
                    "channel": "call_centre",
                },
            )


class EmailSender(PacedUser):
    """An email system at send time: a batch of newsletter recipients in one call."""

    kind = "email"
    abstract = RATES["email"] <= 0  # a rate of 0 leaves the caller out
    fixed_count = USERS["email"]

    @task
    def send_batch(self) -> None:
        self.arrive()
        first = self.rng.randrange(CUSTOMERS)
        requests = [
            {
                "customer_id": f"c-{(first + i) % CUSTOMERS:05d}",
                "channel": "email",
                "placement": "newsletter_block",
                "limit": 1,
            }
            for i in range(EMAIL_BATCH)
        ]
        result = self.post_batch(requests)
        if result is None:
            return
        decisions = result.get("decisions", [])
        fallbacks = sum(1 for d in decisions if isinstance(d, dict) and d.get("fallback"))
        if fallbacks:
            DETAIL.fallbacks["email: POST /v1/decisions/batch"] += fallbacks

    def post_batch(self, requests: list[dict[str, Any]]) -> dict[str, Any] | None:
        name = "email: POST /v1/decisions/batch"
        with self.client.post(
            "/v1/decisions/batch",
            data=_json({"requests": requests}),
            headers=self.headers,
            name=name,
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(describe(response))
                return None
            body: dict[str, Any] = orjson.loads(response.content)
            decisions = body.get("decisions", [])
            if len(decisions) != len(requests):
                response.failure(f"{len(decisions)} answers to {len(requests)} requests")
            elif any("error" in d for d in decisions):
                response.failure("an item of the batch was refused")
            return body


class ResponseFeed(PacedUser):
    """What customers did with what they were shown: impressions, some clicks."""

    kind = "responses"
    abstract = RATES["responses"] <= 0  # a rate of 0 leaves the caller out
    fixed_count = USERS["responses"]
    CLICK_SHARE = 0.15

    @task
    def respond(self) -> None:
        self.arrive()
        rng = self.rng
        if SHOWN:
            decision_id, action_id, customer = SHOWN[rng.randrange(len(SHOWN))]
            body: dict[str, Any] = {"decision_id": decision_id}
        else:  # nothing shown yet: a response without a decision id is allowed
            action_id, customer = "summer-shoes-10", customer_id(rng)
            body = {}
        body.update(
            action_id=action_id,
            customer_id=customer,
            outcome="click" if rng.random() < self.CLICK_SHARE else "impression",
            channel="web",
        )
        self.post("responses: POST /v1/responses", "/v1/responses", body)
