"""Contact policies: per-action impression caps and decline suppression, per-channel
and per-customer caps. Read from the counters fetched with the decision; caps that
count decisions are reserved atomically in the store after arbitration.

Counter fields (written by the responses stream, or by a reservation):
``<action>:last_decline`` (time), ``<action>:imp_ts`` (recent impression times),
``cap:<channel>:<cap>`` and ``cap:customer:<cap>`` (recent contact times).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.domain import Action, Cap, CatalogueSettings

DAY = 86400.0
DECLINE_SUFFIX = ":last_decline"
IMPRESSIONS_SUFFIX = ":imp_ts"


def count_since(stamps: Any, since: float) -> int:
    if not isinstance(stamps, list):
        return 0
    return sum(1 for t in stamps if isinstance(t, int | float) and t > since)


@dataclass(frozen=True, slots=True)
class CapRule:
    cap: Cap
    field: str
    covers: np.ndarray  # bool per action index: the actions this cap counts


@dataclass(frozen=True, slots=True)
class Reservation:
    """One cap a chosen action must find room in: at most ``count`` stamps in ``window_s``."""

    field: str
    count: int
    window_s: float


class ContactRules:
    def __init__(self, actions: Sequence[Action], settings: CatalogueSettings) -> None:
        self.ids = {a.id: i for i, a in enumerate(actions)}
        self.suppress_s = np.array(
            [
                (a.contact_policy.suppress_after_decline_days or 0.0) * DAY
                if a.contact_policy
                else 0.0
                for a in actions
            ]
        )
        self.impression_cap: dict[int, tuple[int, float]] = {
            i: (a.contact_policy.max_impressions.count, a.contact_policy.max_impressions.days * DAY)
            for i, a in enumerate(actions)
            if a.contact_policy and a.contact_policy.max_impressions
        }
        kinds = np.array([a.kind for a in actions], dtype=object)
        channels = [set(a.channels) for a in actions]
        self.channel_caps: dict[str, list[CapRule]] = {}
        for channel, config in settings.channels.items():
            self.channel_caps[channel] = [
                CapRule(cap, f"cap:{channel}:{cap.name}", np.isin(kinds, cap.kinds))
                for cap in config.caps
            ]
        self.customer_caps: list[CapRule] = []
        for cap in settings.customer_caps:
            covers = np.isin(kinds, cap.kinds)
            if cap.channels is not None:
                allowed = set(cap.channels)
                covers &= np.array([bool(c & allowed) for c in channels], dtype=bool)
            self.customer_caps.append(CapRule(cap, f"cap:customer:{cap.name}", covers))

    def _caps(self, channel: str) -> list[CapRule]:
        rules = list(self.channel_caps.get(channel, ()))
        rules += [
            r for r in self.customer_caps if r.cap.channels is None or channel in r.cap.channels
        ]
        return rules

    def blocked(
        self, idx: np.ndarray, channel: str, counters: Mapping[str, Any], now: float
    ) -> dict[int, str]:
        """Positions in ``idx`` the policies exclude, with the reason for each."""
        if not counters:
            return {}
        # dict(zip(...tolist())): a comprehension over the numpy array took 15 µs for 100
        # candidates, this 6 µs (scratch timeit, this machine)
        where = dict(zip(idx.tolist(), range(len(idx)), strict=True))
        out: dict[int, str] = {}
        for key, value in counters.items():
            if key.endswith(DECLINE_SUFFIX):
                action = self.ids.get(key[: -len(DECLINE_SUFFIX)])
                if action is None or action not in where or not isinstance(value, int | float):
                    continue
                if now - value < self.suppress_s[action]:
                    out[where[action]] = "contact_policy:suppressed_after_decline"
            elif key.endswith(IMPRESSIONS_SUFFIX):
                action = self.ids.get(key[: -len(IMPRESSIONS_SUFFIX)])
                cap = self.impression_cap.get(action) if action is not None else None
                if cap is None or action not in where:
                    continue
                if count_since(value, now - cap[1]) >= cap[0]:
                    out.setdefault(where[action], "contact_policy:max_impressions")
        for rule in self._caps(channel):
            if count_since(counters.get(rule.field), now - rule.cap.days * DAY) >= rule.cap.count:
                for pos in np.flatnonzero(rule.covers[idx]):
                    out.setdefault(int(pos), f"contact_policy:cap:{rule.cap.name}")
        return out

    def reservations(self, action: int, channel: str) -> list[Reservation]:
        """The caps a decision must reserve room in before it may show ``action``."""
        return [
            Reservation(rule.field, rule.cap.count, rule.cap.days * DAY)
            for rule in self._caps(channel)
            if rule.covers[action]
        ]

    def state(
        self, action: Action, channel: str, counters: Mapping[str, Any], now: float
    ) -> dict[str, Any]:
        """The policy state of one action for an explanation."""
        index = self.ids[action.id]
        last = counters.get(action.id + DECLINE_SUFFIX)
        state: dict[str, Any] = {
            "impressions": counters.get(f"{action.id}:impression", 0),
            "declines": counters.get(f"{action.id}:decline", 0),
            "days_since_decline": None
            if not isinstance(last, int | float)
            else round((now - last) / DAY, 3),
        }
        cap = self.impression_cap.get(index)
        if cap is not None:
            shown = count_since(counters.get(action.id + IMPRESSIONS_SUFFIX), now - cap[1])
            state["impressions_in_window"] = {"count": shown, "max": cap[0], "days": cap[1] / DAY}
        caps = {}
        for rule in self._caps(channel):
            if rule.covers[index]:
                used = count_since(counters.get(rule.field), now - rule.cap.days * DAY)
                caps[rule.cap.name] = {"used": used, "max": rule.cap.count, "days": rule.cap.days}
        if caps:
            state["caps"] = caps
        return state
