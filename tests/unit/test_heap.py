"""The API freezes its live state out of the garbage collector's walks (engine.heap)
without keeping what an old state left behind."""

from __future__ import annotations

import asyncio
import gc
import weakref
from types import SimpleNamespace
from typing import Any

from engine.heap import keep_frozen


class Node:
    me: Any = None


def cyclic() -> Node:
    """Garbage only the cyclic collector frees, once nothing else holds it."""
    node = Node()
    node.me = node
    return node


async def test_the_live_state_is_frozen_once_the_start_has_settled() -> None:
    holder = SimpleNamespace(snapshot=cyclic())
    gc.unfreeze()
    task = asyncio.create_task(keep_frozen(holder, settle_s=0.01, every_s=0.01))  # type: ignore[arg-type]
    try:
        assert gc.get_freeze_count() == 0
        await asyncio.sleep(0.05)
        assert gc.get_freeze_count() > 0
    finally:
        task.cancel()
        gc.unfreeze()


async def test_a_change_of_state_frees_what_the_old_state_left_in_cycles() -> None:
    holder = SimpleNamespace(snapshot=cyclic())
    old = weakref.ref(holder.snapshot)
    task = asyncio.create_task(keep_frozen(holder, settle_s=0, every_s=0.01))  # type: ignore[arg-type]
    try:
        await asyncio.sleep(0.05)
        holder.snapshot = cyclic()  # the old one is now garbage, frozen in a cycle
        gc.collect()
        assert old() is not None  # a plain collection leaves frozen objects alone
        await asyncio.sleep(0.05)
        assert old() is None
    finally:
        task.cancel()
        gc.unfreeze()
