"""Keeping the live catalogue: files plus API changes, validated before they count.

A change is checked by compiling the whole catalogue with it; only then is it stored,
so a bad change is refused with every problem and the last good catalogue keeps
serving. Every API process polls the store's revision and rebuilds when it moves.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from engine.domain import Action
from engine.errors import CatalogueError, NotFound, Problem
from engine.stopping import stop_requested
from rules.catalogue import Catalogue, load_catalogue, parse_action

log = logging.getLogger("nba.catalogue")


class OverrideStore(Protocol):
    async def revision(self) -> int: ...

    async def overrides(self) -> tuple[int, dict[str, dict[str, Any] | None]]: ...

    async def change(self, action_id: str, action: dict[str, Any] | None, note: str) -> int: ...

    async def history(
        self, action_id: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]: ...


class CatalogueManager:
    def __init__(
        self, folder: Path, store: OverrideStore, install: Callable[[Catalogue], None]
    ) -> None:
        self.folder = folder
        self.store = store
        self.install = install
        self.revision = -1
        self.current: Catalogue | None = None
        self._lock = asyncio.Lock()

    async def reload(self) -> Catalogue:
        """Rebuild from the files and the stored overrides; keep the last good on error."""
        revision, raw = await self.store.overrides()
        self.revision = revision  # a refused revision is not retried until the next change
        overrides = {k: None if v is None else Action.model_validate(v) for k, v in raw.items()}
        catalogue = await asyncio.to_thread(load_catalogue, self.folder, overrides)
        self.current = catalogue
        self.install(catalogue)
        return catalogue

    async def watch(self, every_s: float = 0.25) -> None:
        while True:
            try:
                if await self.store.revision() != self.revision:
                    async with self._lock:
                        await self.reload()
                        log.warning("catalogue revision %s live", self.revision)
            except CatalogueError as exc:
                log.error("stored catalogue refused, keeping the last good one: %s", exc)
            except Exception as exc:  # the store is away: try again later
                log.debug("catalogue watch: %s", exc)
            if stop_requested():  # a library consumed the cancellation of its call
                raise asyncio.CancelledError
            await asyncio.sleep(every_s)

    async def put(self, action_id: str, payload: Any) -> Catalogue:
        if isinstance(payload, dict) and payload.get("id", action_id) != action_id:
            raise CatalogueError([Problem("request", 1, "id: must match the id in the path")])
        if isinstance(payload, dict):
            payload = {**payload, "id": action_id}
        action = parse_action(payload)
        return await self._change(action_id, action, "put")

    async def delete(self, action_id: str) -> Catalogue:
        if self.current is None or action_id not in self.current.by_id:
            raise NotFound(f"no action {action_id!r}")
        return await self._change(action_id, None, "delete")

    async def _change(self, action_id: str, action: Action | None, note: str) -> Catalogue:
        async with self._lock:
            _, raw = await self.store.overrides()
            overrides = {k: None if v is None else Action.model_validate(v) for k, v in raw.items()}
            overrides[action_id] = action
            await asyncio.to_thread(load_catalogue, self.folder, overrides)  # refuses bad ones
            await self.store.change(
                action_id, None if action is None else action.model_dump(mode="json"), note
            )
            return await self.reload()
