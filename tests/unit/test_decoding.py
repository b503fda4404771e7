"""Reading stored views back as features: the decoder keeps a layout per field set, so
customers whose fields share names but not kinds must still read right."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.features import field_layout, load_features
from feature_store import windows
from feature_store.decoding import TIMESTAMP, ViewDecoder

FEATURES = load_features()
CONFIG = FEATURES.views.behaviour
LAYOUT = field_layout(CONFIG.widths, CONFIG.buckets)
NOW = 1_800_000_000.0


def counter(events: int) -> bytes:
    raw = None
    for _ in range(events):
        raw = windows.update(raw, NOW - 1, LAYOUT)
    assert raw is not None
    return raw


def behaviour(views: int | str, pages: int) -> dict[bytes, bytes]:
    """``views``: a count kept as a window counter, or text written as a plain value."""
    held = counter(views) if isinstance(views, int) else orjson.dumps(views)
    return {
        b"views_{w}_shoes": held,
        b"page_view_{w}": counter(pages),
        b"last_category": b'"shoes"',
        TIMESTAMP.encode(): b"1799999999.5",
    }


def read(decoder: ViewDecoder, *rows: dict[bytes, bytes]) -> list[dict[str, object]]:
    states = decoder.states([(f"c{n}", {}, row, {}) for n, row in enumerate(rows)], NOW)
    return [state.behaviour for state in states]


@pytest.mark.parametrize("order", ["counter first", "plain first"])
def test_a_field_counted_for_one_customer_and_plain_for_another_reads_right(order: str) -> None:
    rows = [behaviour(3, 2), behaviour("reset", 4)]
    if order == "plain first":
        rows.reverse()
    decoder = ViewDecoder(FEATURES)
    for _ in range(2):  # the second time from the kept layout
        got = read(decoder, *rows)
        counted, plain = (got[0], got[1]) if order == "counter first" else (got[1], got[0])
        assert counted["views_5m_shoes"] == 3 and counted["page_view_5m"] == 2
        assert "views_{w}_shoes" not in counted
        assert plain["views_{w}_shoes"] == "reset" and plain["page_view_5m"] == 4
        assert "views_5m_shoes" not in plain
        assert counted["last_category"] == plain["last_category"] == "shoes"


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.one_of(st.integers(1, 5), st.text(max_size=5)), st.integers(1, 5)),
        min_size=1,
        max_size=6,
    )
)
def test_a_batch_reads_as_each_customer_alone(rows: list[tuple[int | str, int]]) -> None:
    views = [behaviour(v, p) for v, p in rows]
    together = read(ViewDecoder(FEATURES), *views)
    alone = [read(ViewDecoder(FEATURES), row)[0] for row in views]
    assert together == alone


def test_the_view_timestamp_is_kept_apart_from_the_features() -> None:
    state = ViewDecoder(FEATURES).states([("c", {}, behaviour(1, 1), {})], NOW)[0]
    assert state.updated["behaviour"] == 1799999999.5
    assert TIMESTAMP not in state.behaviour


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.permutations(range(4)), min_size=2, max_size=5),
    st.lists(st.one_of(st.integers(1, 5), st.text(max_size=5)), min_size=5, max_size=5),
)
def test_a_view_reads_the_same_whatever_order_its_fields_come_in(
    orders: list[list[int]], views: list[int | str]
) -> None:
    """A view's fields come in the order its events first wrote them; one decoder sees
    many orders, each layout built from what earlier ones taught it."""
    decoder = ViewDecoder(FEATURES)
    for order, held in zip(orders, views, strict=False):
        fields = list(behaviour(held, 2).items())
        shuffled = dict(fields[at] for at in order)
        assert read(decoder, shuffled) == read(ViewDecoder(FEATURES), dict(fields))
