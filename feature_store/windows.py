"""Sliding-window counters in bounded memory, read in O(1).

Each counter keeps, per window ``w``, ``buckets + 1`` time buckets of width
``w / buckets`` (newest first) and the index of the newest: ``buckets + 2`` numbers per
window, whatever the traffic. A write (Lua, in the store) shifts the buckets to the
event's time and adds one. A read at time ``t`` sums the current, partly elapsed bucket,
the ``buckets - 1`` full ones before it, and the fraction of the oldest bucket that still
lies inside ``[t - w, t]``.

Precision: exact except for the oldest bucket, which is counted in proportion to how
much of it is still inside the window (events are taken as spread evenly inside one
bucket). The error is therefore at most the count of one bucket, ``1/buckets`` of the
window's span (with 6 buckets: 50 s of a 5 min window, 10 min of an hour, 4 h of a day,
28 h of a week). Events that arrive later than the oldest kept bucket are dropped.

Stored as ``w`` then little-endian 32-bit integers, so the store's Lua script packs and
unpacks them with one ``struct`` call and all counters of a customer decode together
with one numpy call.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

PREFIX = b"w"


def decode(
    values: Sequence[bytes], widths: Sequence[float], buckets: int, now: float
) -> np.ndarray:
    """Window sums, shape (len(values), len(widths)), from encoded counters."""
    windows = len(widths)
    slots = buckets + 1
    if not values:
        return np.zeros((0, windows))
    numbers = (
        np.frombuffer(b"".join(v[1:] for v in values), dtype="<i4")
        .astype(np.float64)
        .reshape(len(values), windows, slots + 1)
    )
    width = np.asarray(widths, dtype=np.float64)
    current = np.floor(now / width)
    head = numbers[:, :, 0]
    counts = numbers[:, :, 1:]
    age = (current - head)[:, :, None] + np.arange(slots)[None, None, :]
    elapsed = (now - current * width) / width
    weight = np.where(age < slots - 1, 1.0, 0.0)
    weight = np.where(age == slots - 1, (1.0 - elapsed)[None, :, None], weight)
    weight = np.where(age < 0, 1.0, weight)  # written by a clock slightly ahead of ours
    return np.asarray((counts * weight).sum(axis=2))


def reference_count(times: Sequence[float], window: float, now: float) -> int:
    """The exact count the encoding approximates (for tests)."""
    return sum(1 for t in times if now - window < t <= now)


def update(raw: bytes | None, at: float, layout: str) -> bytes:
    """The write, as the store's Lua script does it (for the in-memory backend)."""
    width_text, slots_text = layout.split(";")
    widths = [float(w) for w in width_text.split(",")]
    slots = int(slots_text)
    size = len(widths) * (slots + 1)
    old = list(struct.unpack(f"<{size}i", raw[1:])) if raw and len(raw) == 1 + 4 * size else []
    out: list[int] = []
    for k, width in enumerate(widths):
        base = k * (slots + 1)
        idx = int(at // width)
        head = old[base] if old else idx
        counts = old[base + 1 : base + 1 + slots] if old else [0] * slots
        if idx > head:
            shift = idx - head
            counts = [counts[j - shift] if j - shift >= 0 else 0 for j in range(slots)]
            head = idx
        pos = head - idx
        if 0 <= pos < slots:
            counts[pos] += 1
        out += [head, *counts]
    return PREFIX + struct.pack(f"<{len(out)}i", *out)
