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


class WindowReader:
    """Sums of encoded counters at a given time, for one window layout.

    The weight of a bucket depends only on how far the counter's newest bucket lies
    behind the current one (clipped to ``-1 .. slots``, beyond which every weight is 1
    or 0) and on the elapsed part of the current bucket. So a read builds one small
    table of weights per window and picks each counter's row from it: a dozen numpy
    calls for all counters of a customer, whatever their number.
    """

    def __init__(self, widths: Sequence[float], buckets: int) -> None:
        self.width = np.asarray(widths, dtype=np.float64)
        self.windows = len(widths)
        self.slots = slots = buckets + 1
        behind = np.arange(-1, slots + 1)[:, None]
        age = behind + np.arange(slots)[None, :]
        self._full = (age < slots - 1).astype(np.float64)  # inside the window
        self._edge = (age == slots - 1).astype(np.float64)  # the oldest, partly inside
        self._columns = np.arange(self.windows)[None, :]

    def sums(self, values: Sequence[bytes], now: float) -> np.ndarray:
        """Window sums, shape (len(values), windows)."""
        if not values:
            return np.zeros((0, self.windows))
        slots = self.slots
        numbers = np.frombuffer(b"".join([v[1:] for v in values]), dtype="<i4").reshape(
            len(values), self.windows, slots + 1
        )
        position = now / self.width
        current = np.floor(position)
        table = self._full + self._edge * (1.0 - (position - current))[:, None, None]
        behind = current - numbers[:, :, 0]  # > 0: buckets have passed since the last write
        np.maximum(behind, -1, out=behind)
        np.minimum(behind, slots, out=behind)
        weights = table[self._columns, behind.astype(np.intp) + 1]
        return np.asarray(np.einsum("rwj,rwj->rw", numbers[:, :, 1:], weights))


def decode(
    values: Sequence[bytes], widths: Sequence[float], buckets: int, now: float
) -> np.ndarray:
    """Window sums, shape (len(values), len(widths)), from encoded counters."""
    return WindowReader(widths, buckets).sums(values, now)


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
