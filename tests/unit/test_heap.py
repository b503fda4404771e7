"""The API freezes what it built at start out of the garbage collector's walks
(engine.heap), and what comes later is still collected."""

from __future__ import annotations

import gc
import weakref
from typing import Any

from engine.heap import freeze_start_up


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
    try:
        await freeze_start_up()
        assert left_behind() is None
        assert gc.get_freeze_count() > 0
        kept = weakref.ref(living)
        del living
        gc.collect()
        assert kept() is not None  # frozen: left out of collections
    finally:
        gc.unfreeze()


async def test_what_comes_after_start_up_is_still_collected() -> None:
    try:
        await freeze_start_up()
        later = weakref.ref(cyclic())
        gc.collect()
        assert later() is None
    finally:
        gc.unfreeze()
