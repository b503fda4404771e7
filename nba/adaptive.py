"""Wiring the adaptive model: restore it from the store, follow the worker's deltas in
the API, and blend it with the base scorer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from engine.holders import LiveState
from engine.stopping import stop_requested
from feature_store.adaptive_store import RedisAdaptiveStore
from models.adaptive import AdaptiveModel
from models.adaptive_state import Delta
from models.blended import BlendedScorer

log = logging.getLogger("nba.adaptive")
FOLLOW_EVERY_S = 0.5


async def restore(store: RedisAdaptiveStore) -> tuple[AdaptiveModel, str]:
    """The snapshot (or a fresh model) with every delta after it applied."""
    state, cursor = await store.snapshot()
    model = AdaptiveModel.from_bytes(state) if state else AdaptiveModel()
    while deltas := await store.deltas_after(cursor):
        for entry, raw in deltas:
            model.apply_delta(Delta.from_bytes(raw))
            cursor = entry
    return model, cursor


def blend_with(model: AdaptiveModel) -> Any:
    def blend(base: Any, views: Sequence[Mapping[str, Any]], priors: Sequence[float]) -> Any:
        return BlendedScorer(model, views, priors, base=base)

    return blend


async def follow(store: RedisAdaptiveStore, live: LiveState) -> None:
    """Keep the API's copy of the adaptive model in step with the worker's deltas."""
    model, cursor = await restore(store)
    live.set_blend(blend_with(model))
    while True:
        try:
            oldest = await store.oldest()
            if oldest is not None and cursor != "0-0" and _before(cursor, oldest):
                model, cursor = await restore(store)  # trimmed past us: start again
                live.set_blend(blend_with(model))
            for entry, raw in await store.deltas_after(cursor):
                model.apply_delta(Delta.from_bytes(raw))
                cursor = entry
        except Exception as exc:
            log.debug("adaptive follow: %s", exc)
        if stop_requested():  # a library consumed the cancellation of its call
            raise asyncio.CancelledError
        await asyncio.sleep(FOLLOW_EVERY_S)


def _before(a: str, b: str) -> bool:
    """Stream id ``a`` is older than the one before ``b`` (so entries were lost)."""
    ams, aseq = (int(x) for x in a.split("-"))
    bms, bseq = (int(x) for x in b.split("-"))
    return (ams, aseq + 1) < (bms, bseq)
