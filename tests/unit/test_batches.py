"""BackgroundBatches: order kept, bounded batches, reading overlaps a slow store,
a failure reaches the agent."""

from __future__ import annotations

import asyncio

import pytest

from streams.batches import BackgroundBatches


async def test_items_are_handled_in_order_in_bounded_batches() -> None:
    seen: list[list[int]] = []

    async def handle(batch: list[int]) -> None:
        await asyncio.sleep(0.001)
        seen.append(batch)

    batches = BackgroundBatches(handle, max_batch=3)
    for n in range(10):
        await batches.put(n)
    await batches.drain()
    await batches.close()
    assert [n for batch in seen for n in batch] == list(range(10))
    assert all(1 <= len(batch) <= 3 for batch in seen)


async def test_items_queue_up_while_a_batch_is_stored() -> None:
    release = asyncio.Event()
    seen: list[list[int]] = []

    async def handle(batch: list[int]) -> None:
        await release.wait()
        seen.append(batch)

    batches = BackgroundBatches(handle, max_batch=100, max_pending=100)
    await batches.put(0)
    await asyncio.sleep(0)  # the first batch goes out alone and waits for the store
    for n in range(1, 6):
        await batches.put(n)  # read meanwhile, not stored yet
    assert seen == [] and batches.pending == [1, 2, 3, 4, 5]
    release.set()
    await batches.drain()
    await batches.close()
    assert seen == [[0], [1, 2, 3, 4, 5]]


async def test_a_batch_lingers_for_more_items() -> None:
    seen: list[list[int]] = []

    async def handle(batch: list[int]) -> None:
        seen.append(batch)

    batches = BackgroundBatches(handle, max_batch=100, linger_s=0.05)
    for n in range(3):
        await batches.put(n)
        await asyncio.sleep(0.005)
    await batches.drain()
    await batches.close()
    assert seen == [[0, 1, 2]]


async def test_a_failed_batch_stops_the_agent() -> None:
    async def handle(batch: list[int]) -> None:
        raise ValueError("bug")

    batches = BackgroundBatches(handle, max_batch=1)
    await batches.put(1)
    await asyncio.sleep(0.01)
    with pytest.raises(ValueError, match="bug"):
        await batches.put(2)
    await batches.close()
