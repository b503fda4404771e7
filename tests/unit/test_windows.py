"""Sliding windows: bounded, and within one bucket of the exact count."""

from __future__ import annotations

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


def test_counts_move_out_of_the_window_as_time_passes() -> None:
    raw = windows.update(None, NOW, LAYOUT)
    raw = windows.update(raw, NOW, LAYOUT)
    five_minutes = CONFIG.windows.index("5m")
    assert windows.decode([raw], CONFIG.widths, CONFIG.buckets, NOW)[0][five_minutes] == 2
    later = windows.decode([raw], CONFIG.widths, CONFIG.buckets, NOW + 400)[0]
    assert later[five_minutes] == 0
    assert later[CONFIG.windows.index("1h")] == 2
