"""The load ``nba loadtest`` offers: each caller's arrivals per second for a web rate,
and how many simulated users keep them up."""

from __future__ import annotations

import math
from collections.abc import Mapping

# The other callers' shares of the web rate (mirrored as defaults in the locustfile).
DESK_SHARE = 0.01  # agent sessions per page view
EMAIL_DECISION_SHARE = 0.1  # email decisions per page view
EMAIL_BATCH = 100  # requests per batch
RESPONSE_SHARE = 0.1  # responses per page view
# The most one simulated user is asked to keep up: its mean gap between arrivals stays
# well above the latency measured, so a user is never its own bottleneck (a response is
# answered once the broker has it, after up to 50 ms of the producer's linger).
PER_USER_RATE = {"web": 20.0, "desk": 2.0, "email": 0.5, "responses": 5.0}
# The request that counts one arrival of each caller (for the achieved rate).
MAIN_REQUESTS = {
    "web": ("web: POST /v1/decisions", "web: POST /v1/decisions (shop)"),
    "desk": ("desk: POST /v1/decisions (explain)",),
    "email": ("email: POST /v1/decisions/batch",),
    "responses": ("responses: POST /v1/responses",),
}
RATE_UNITS = {
    "web": "decisions/s",
    "desk": "sessions/s",
    "email": "batches/s",
    "responses": "responses/s",
}


def offered_rates(rate: float) -> dict[str, float]:
    """Arrivals per second of each caller for a web rate of ``rate``."""
    return {
        "web": rate,
        "desk": rate * DESK_SHARE,
        "email": rate * EMAIL_DECISION_SHARE / EMAIL_BATCH,
        "responses": rate * RESPONSE_SHARE,
    }


def users_for(rates: Mapping[str, float]) -> dict[str, int]:
    return {k: max(1, math.ceil(r / PER_USER_RATE[k])) if r > 0 else 0 for k, r in rates.items()}
