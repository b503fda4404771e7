"""Sliding windows: bounded, within one bucket of the exact count, and the compiled sums
the same as the table of weights they replaced."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.features import field_layout, load_features
from feature_store import windows

CONFIG = load_features().views.behaviour
LAYOUT = field_layout(CONFIG.widths, CONFIG.buckets)
NOW = 1_800_000_000.0


@settings(max_examples=300, deadline=None)
@given(ages=st.lists(st.floats(min_value=0, max_value=9 * 86400), max_size=60))
def test_window_sums_are_within_one_bucket_of_the_exact_count(ages: list[float]) -> None:
    raw = None
    times = sorted(NOW - age for age in ages)
    for t in times:
        raw = windows.update(raw, t, LAYOUT)
    if raw is None:
        return
    assert len(raw) == 1 + 4 * len(CONFIG.widths) * (CONFIG.buckets + 2)  # bounded
    sums = windows.decode([raw], CONFIG.widths, CONFIG.buckets, NOW)[0]
    for col, width in enumerate(CONFIG.widths):
        span = width * CONFIG.buckets
        exact = windows.reference_count(times, span, NOW)
        oldest = windows.reference_count(times, span + width, NOW) - windows.reference_count(
            times, span - width, NOW
        )
        assert abs(sums[col] - exact) <= oldest + 1e-9


@settings(max_examples=200, deadline=None)
@given(
    ages=st.lists(st.floats(min_value=0, max_value=9 * 86400), min_size=1, max_size=40),
    data=st.data(),
)
def test_a_late_event_counts_in_the_windows_it_falls_in_whatever_the_arrival_order(
    ages: list[float], data: st.DataObject
) -> None:
    """Out of order (a late event after current ones) gives the counter it would have had
    in time order: the head stays at the newest event, older buckets take the late one."""
    times = [NOW - age for age in ages]
    arrived = data.draw(st.permutations(times))
    in_order = in_arrival = None
    for t in sorted(times):
        in_order = windows.update(in_order, t, LAYOUT)
    for t in arrived:
        in_arrival = windows.update(in_arrival, t, LAYOUT)
    assert in_arrival == in_order


def test_counts_move_out_of_the_window_as_time_passes() -> None:
    raw = windows.update(None, NOW, LAYOUT)
    raw = windows.update(raw, NOW, LAYOUT)
    five_minutes = CONFIG.windows.index("5m")
    assert windows.decode([raw], CONFIG.widths, CONFIG.buckets, NOW)[0][five_minutes] == 2
    later = windows.decode([raw], CONFIG.widths, CONFIG.buckets, NOW + 400)[0]
    assert later[five_minutes] == 0
    assert later[CONFIG.windows.index("1h")] == 2


def _table_sums(values: list[bytes], widths: list[float], buckets: int, now: float) -> np.ndarray:
    """The numpy version the kernel replaced: one table of weights per window, a row
    picked per counter by how far its newest bucket lies behind."""
    slots, count = buckets + 1, len(widths)
    behind = np.arange(-1, slots + 1)[:, None]
    age = behind + np.arange(slots)[None, :]
    full, edge = (age < slots - 1).astype(float), (age == slots - 1).astype(float)
    numbers = np.frombuffer(b"".join(v[1:] for v in values), dtype="<i4").reshape(
        len(values), count, slots + 1
    )
    position = now / np.asarray(widths)
    current = np.floor(position)
    table = full + edge * (1.0 - (position - current))[:, None, None]
    lag = np.clip(current - numbers[:, :, 0], -1, slots).astype(np.intp)
    weights = table[np.arange(count)[None, :], lag + 1]
    return np.einsum("rwj,rwj->rw", numbers[:, :, 1:], weights)


@settings(max_examples=200, deadline=None)
@given(
    counters=st.lists(
        st.lists(st.floats(min_value=-2 * 86400, max_value=10 * 86400), max_size=12),
        min_size=1,
        max_size=5,
    ),
    later=st.floats(min_value=-600, max_value=9 * 86400),
)
def test_compiled_sums_are_the_tables(counters: list[list[float]], later: float) -> None:
    """Counters written at any times (some after the read: a clock ahead), read at any
    time: the same sums, up to the rounding of one fractional term."""
    values = []
    for ages in counters:
        raw = windows.update(None, NOW, LAYOUT)
        for age in sorted(ages, reverse=True):
            raw = windows.update(raw, NOW - age, LAYOUT)
        values.append(raw)
    now = NOW + later
    compiled = windows.WindowReader(CONFIG.widths, CONFIG.buckets).sums(values, now)
    reference = _table_sums(values, CONFIG.widths, CONFIG.buckets, now)
    np.testing.assert_allclose(compiled, reference, rtol=1e-12, atol=1e-9)


def test_a_counter_of_another_layout_is_refused_not_misread() -> None:
    short = windows.update(None, NOW, "60.0;3")  # one window where the reader has four
    with pytest.raises(ValueError):
        windows.WindowReader(CONFIG.widths, CONFIG.buckets).sums([short], NOW)


def test_warm_up_leaves_the_sums_compiled_once() -> None:
    windows.warm_up()
    windows.WindowReader(CONFIG.widths, CONFIG.buckets).sums([], NOW)
    assert len(windows._sums.signatures) == 1
