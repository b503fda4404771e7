"""The API freezes what it built at start out of the garbage collector's walks
(engine.heap), what comes later is still collected, and full collections are spaced out."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from engine.heap import MIDDLE_PER_FULL, freeze_start_up

CPYTHON_MIDDLE_PER_FULL = 10


@pytest.fixture(autouse=True)
def restored_collector() -> Iterator[None]:
    """Each test's freeze and thresholds undone, for the tests after it."""
    thresholds = gc.get_threshold()
    yield
    gc.set_threshold(*thresholds)
    gc.unfreeze()


class Node:
    me: Any = None


def cyclic() -> Node:
    """Garbage only the cyclic collector frees, once nothing else holds it."""
    node = Node()
    node.me = node
    return node


async def test_start_up_garbage_goes_and_what_lives_on_is_frozen() -> None:
    gc.unfreeze()
    left_behind = weakref.ref(cyclic())  # garbage already, in a cycle
    living = cyclic()
    await freeze_start_up()
    assert left_behind() is None
    assert gc.get_freeze_count() > 0
    kept = weakref.ref(living)
    del living
    gc.collect()
    assert kept() is not None  # frozen: left out of collections


async def test_what_comes_after_start_up_is_still_collected() -> None:
    await freeze_start_up()
    later = weakref.ref(cyclic())
    gc.collect()
    assert later() is None


async def test_batches_after_start_up_bring_no_full_collection_before_their_turn() -> None:
    """Batches whose objects live for the batch (promoted, then dropped) fill the small
    unfrozen old generation quickly; a full collection still waits for its turn."""
    collections = {0: 0, 1: 0, 2: 0}

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "stop":
            collections[info["generation"]] += 1

    await freeze_start_up()
    gc.callbacks.append(count)
    try:
        while collections[1] < 3 * CPYTHON_MIDDLE_PER_FULL:  # and fewer than ours
            batch = [{"customer": n, "features": [n]} for n in range(20_000)]
            del batch
        assert 3 * CPYTHON_MIDDLE_PER_FULL < MIDDLE_PER_FULL
        assert collections[2] == 0, collections
    finally:
        gc.callbacks.remove(count)
