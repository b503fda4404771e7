"""A background loop stops when cancelled even if a library consumes the cancellation of
its call: turns it into an error of its own, or answers as if nothing happened."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from engine.config import DEMO_CATALOGUE
from rules.live import CatalogueManager


class SwallowingStore:
    """An override store whose revision() consumes a cancellation: it raises a connection
    error instead, or (``answers``) returns as if it had not been interrupted."""

    def __init__(self, answers: bool) -> None:
        self.answers = answers
        self.calls = 0
        self.give_up = False  # then the next call lets a cancellation through

    async def revision(self) -> int:
        self.calls += 1
        if self.give_up:
            raise asyncio.CancelledError
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            if not self.answers:
                raise ConnectionError("the read was interrupted") from None
        return 0

    async def overrides(self) -> tuple[int, dict[str, dict[str, Any] | None]]:
        return 0, {}

    async def change(self, action_id: str, action: dict[str, Any] | None, note: str) -> int:
        return 0

    async def history(self, action_id: str | None = None, limit: int = 50) -> list[Any]:
        return []


@pytest.mark.parametrize("answers", [False, True])
async def test_the_catalogue_watch_stops_when_its_store_call_swallows_the_cancel(
    answers: bool,
) -> None:
    store = SwallowingStore(answers)
    manager = CatalogueManager(DEMO_CATALOGUE, store, lambda catalogue: None)
    task = asyncio.create_task(manager.watch(every_s=0.01))
    while not store.calls:
        await asyncio.sleep(0.01)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2.0)
    if not done:  # end it all the same, so that a failure does not hang the test loop
        store.give_up = True
        await asyncio.wait({task}, timeout=2.0)
    assert done, "the watch went on after it was cancelled"
    assert task.cancelled()
    assert store.calls == 1
