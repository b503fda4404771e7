"""The adaptive model's learning loop in the stream worker.

A decision's shown actions wait here (with what the decision saw: features, context, the
action's view, the logit it started from) until a positive response arrives (reward 1,
learned at once) or ``label_window_s`` passes without one (reward 0). Each second the
observations are applied as one batch and the resulting delta is published; a snapshot
is stored every ``snapshot_every_s``. Pending decisions live in memory: a crashed
worker loses only the few seconds of lessons it had not published.

Most shown actions get no response, and each lesson costs the worker about as much as
hashing a decision. ``negative_share`` below 1 learns only that share of the unanswered
ones, drawn at random, each weighted by its inverse (negative down-sampling): every
positive is still learned, and in expectation the likelihood is the full one.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from models.adaptive import AdaptiveModel, Observation

POSITIVE = frozenset({"click", "accept", "convert"})


@dataclass
class Shown:
    at: float
    customer: Mapping[str, Any]
    context: Mapping[str, Any]
    action: Mapping[str, Any]
    offset: float | None


def unanswered(
    observation: Observation, share: float, draw: Callable[[], float]
) -> Observation | None:
    """A shown action nobody answered: kept with probability ``share`` (a draw of
    ``draw()`` below it), weighted by the inverse, as it stands for those left out."""
    return observation._replace(weight=observation.weight / share) if draw() < share else None


class Learner:
    def __init__(
        self,
        model: AdaptiveModel,
        publish: Callable[[bytes], Awaitable[str]],
        save: Callable[[bytes, str], Awaitable[None]],
        label_window_s: float = 10.0,
        snapshot_every_s: float = 30.0,
        negative_share: float = 1.0,
        seed: int | None = None,
    ) -> None:
        if not 0.0 < negative_share <= 1.0:
            raise ValueError(f"negative_share must be in (0, 1], got {negative_share}")
        self.model = model
        self.publish = publish
        self.save = save
        self.label_window_s = label_window_s
        self.snapshot_every_s = snapshot_every_s
        self.negative_share = negative_share
        self.rng = random.Random(seed)
        self.pending: dict[tuple[str, str], Shown] = {}
        self.ready: list[Observation] = []
        self.cursor = "0-0"
        self._saved_at = time.monotonic()

    def shown(
        self,
        decision_id: str,
        learn: Sequence[Mapping[str, Any]] | None,
        features: Mapping[str, Any],
        context: Mapping[str, Any],
        fallback: bool = False,
    ) -> None:
        """A decision log record's parts: remember each shown action the adaptive model
        scored. The parts, not the record: the worker holds it parsed, and a copy as a
        dict for each decision cost it more than the remembering."""
        if not learn or fallback:
            return
        at = time.monotonic()
        for item in learn:
            self.pending[(decision_id, item["action_id"])] = Shown(
                at, features, context, item["view"], item.get("offset")
            )

    def responded(self, decision_id: str | None, action_id: str, outcome: str) -> None:
        if decision_id is None or outcome not in POSITIVE:
            return
        shown = self.pending.pop((decision_id, action_id), None)
        if shown is not None:
            self.ready.append(
                Observation(shown.customer, shown.context, shown.action, 1.0, shown.offset)
            )

    async def flush(self) -> int:
        """Label what waited too long as no response, learn the batch, publish its delta."""
        cutoff = time.monotonic() - self.label_window_s
        share, draw = self.negative_share, self.rng.random
        for key in [k for k, s in self.pending.items() if s.at < cutoff]:
            s = self.pending.pop(key)
            kept = unanswered(
                Observation(s.customer, s.context, s.action, 0.0, s.offset), share, draw
            )
            if kept is not None:
                self.ready.append(kept)
        batch, self.ready = self.ready, []
        if batch:
            delta = self.model.update_batch(batch)
            self.cursor = await self.publish(delta.to_bytes())
        if time.monotonic() - self._saved_at > self.snapshot_every_s:
            await self.save(self.model.to_bytes(), self.cursor)
            self._saved_at = time.monotonic()
        return len(batch)
