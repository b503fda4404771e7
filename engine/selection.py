"""What arbitration made of one decision, and how its winners are picked: the sticky
hold-out, the ranked candidates, and the walk down the order that respects diversity and
asks the store for room in contact caps."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.ports import Reservation
from rules.catalogue import Catalogue

DAY = 86400.0


@dataclass(frozen=True, slots=True)
class DecisionInput:
    customer_id: str
    channel: str
    placement: str | None = None
    context: Mapping[str, Any] = field(default_factory=dict)
    limit: int = 1
    explain: bool = False


def in_control(
    catalogue: Catalogue, default_share: float, customer_id: str, channel: str, now: float
) -> bool:
    """Sticky hold-out: a salted hash of the customer id and the current period."""
    share = catalogue.control_share(channel, default_share)
    if share <= 0.0:
        return False
    control = catalogue.control()
    period = int(now // (control.sticky_days * DAY))
    return _held_out(control.salt, period, channel, customer_id, share)


@functools.lru_cache(maxsize=1 << 16)
def _held_out(salt: str, period: int, channel: str, customer_id: str, share: float) -> bool:
    """Remembered: a customer comes back many times in a period."""
    digest = hashlib.blake2b(
        f"{salt}:{period}:{channel}:{customer_id}".encode(), digest_size=8
    ).digest()
    return int.from_bytes(digest, "big") / 2**64 < share


@dataclass(slots=True)
class Ranked:
    """What arbitration made of one decision's eligible candidates."""

    idx: np.ndarray
    propensity: np.ndarray
    weight: np.ndarray
    priority: np.ndarray
    order: list[int]
    excluded: list[dict[str, Any]]
    passed: np.ndarray | None
    diversity: str | None = None
    control: bool = False  # the hold-out group, decided once per decision
    offsets: np.ndarray | None = None  # the adaptive model's starting logits, when on
    moments: Any = None  # the adaptive model's posterior for these candidates


class Selection:
    """Walks one decision's order: diversity, then room in every contact cap, until
    ``limit``. It asks for reservations instead of making them, so a batch can send the
    asks of many decisions to the store in one round trip."""

    def __init__(
        self, catalogue: Catalogue, request: DecisionInput, ranked: Ranked, reserve: bool = True
    ) -> None:
        self.catalogue = catalogue
        self.request = request
        self.ranked = ranked
        self.reserve = reserve
        self.chosen: list[int] = []
        self._seen: set[Any] = set()
        self._order = iter(ranked.order)
        self._pending: int | None = None

    def _group(self, pos: int) -> Any:
        diversity = self.ranked.diversity
        if diversity is None:
            return None
        return self.catalogue.views[int(self.ranked.idx[pos])].get(diversity)

    def _take(self, pos: int) -> None:
        self.chosen.append(pos)
        group = self._group(pos)
        if group is not None:
            self._seen.add(group)

    def next_ask(self) -> Sequence[Reservation] | None:
        """The caps the next candidate needs room in; None when the selection is done."""
        while len(self.chosen) < self.request.limit:
            pos = next(self._order, None)
            if pos is None:
                return None
            group = self._group(pos)
            if group is not None and group in self._seen:
                continue
            action = int(self.ranked.idx[pos])
            asks = self.catalogue.contact.reservations(action, self.request.channel)
            if self.reserve and asks:
                self._pending = pos
                return asks
            self._take(pos)
        return None

    def answer(self, room: bool) -> None:
        if room and self._pending is not None:
            self._take(self._pending)
        self._pending = None
