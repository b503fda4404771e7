"""``nba email-run``: the offer and content block for every recipient of a campaign,
decided at send time through the batch API, written as JSON Lines."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
from tqdm import tqdm

BATCH = 1000


def read_customers(path: Path) -> Iterator[dict[str, Any]]:
    """One customer per line: a bare id, or a JSON object with ``customer_id`` and an
    optional ``context``."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.strip()
            if not line:
                continue
            try:
                item = (
                    orjson.loads(line) if line.startswith(b"{") else {"customer_id": line.decode()}
                )
            except ValueError as exc:  # not JSON, or not UTF-8
                raise ValueError(f"{path}:{number}: {exc}") from None
            if "customer_id" not in item:
                raise ValueError(f"{path}:{number}: customer_id is missing")
            yield item


def run_email(
    customers: Path, out: Path, base_url: str, api_key: str, placement: str | None, limit: int
) -> int:
    """Decide for every recipient. A customer file that is missing or has a bad line, or
    an output that cannot be written: one line on stderr and 2; an API that cannot be
    reached or answers with an error: one line and 1."""
    try:
        items = list(read_customers(customers))
    except OSError as exc:
        return _fail(f"cannot read {exc.filename or customers}: {exc.strerror}", 2)
    except ValueError as exc:
        return _fail(str(exc), 2)
    try:
        return _decide(items, out, base_url, api_key, placement, limit)
    except httpx.HTTPError as exc:
        return _fail(f"cannot reach the API at {base_url} ({exc})", 1)
    except OSError as exc:
        return _fail(f"cannot write {exc.filename or out}: {exc.strerror}", 2)


def _fail(message: str, code: int) -> int:
    print(f"nba email-run: {message}", file=sys.stderr)
    return code


def _decide(
    items: list[dict[str, Any]],
    out: Path,
    base_url: str,
    api_key: str,
    placement: str | None,
    limit: int,
) -> int:
    sent = errors = 0
    headers = {"Authorization": f"Bearer {api_key}"}
    with (
        httpx.Client(base_url=base_url, headers=headers, timeout=60) as client,
        out.open("wb") as sink,
        tqdm(total=len(items), desc="email decisions", unit="rcpt") as bar,
    ):
        for start in range(0, len(items), BATCH):
            chunk = items[start : start + BATCH]
            requests = [
                {
                    "customer_id": i["customer_id"],
                    "channel": "email",
                    "limit": limit,
                    "context": i.get("context", {}),
                    **({"placement": placement} if placement else {}),
                }
                for i in chunk
            ]
            reply = client.post("/v1/decisions/batch", json={"requests": requests})
            if reply.status_code != 200:
                print(
                    f"nba email-run: the API answered {reply.status_code}: {reply.text[:300]}",
                    file=sys.stderr,
                )
                return 1
            for item, decision in zip(chunk, reply.json()["decisions"], strict=True):
                errors += "error" in decision
                sent += bool(decision.get("actions"))
                sink.write(orjson.dumps({"customer_id": item["customer_id"], **decision}) + b"\n")
            bar.update(len(chunk))
    print(
        f"{len(items)} recipients: {sent} with an action, {len(items) - sent - errors} held back "
        f"by rules or caps, {errors} invalid; written to {out}"
    )
    return 0
