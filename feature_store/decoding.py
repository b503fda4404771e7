"""From stored view values to the features a decision reads (shared by every backend)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import orjson

from engine.domain import CustomerState
from engine.features import FeatureConfig, derived_features
from feature_store import windows

TIMESTAMP = "_ts"


class ViewDecoder:
    def __init__(self, features: FeatureConfig) -> None:
        self.features = features
        behaviour = features.views.behaviour
        self.labels = list(behaviour.windows)
        self.widths = behaviour.widths
        self.buckets = behaviour.buckets

    def state(
        self,
        customer_id: str,
        profile: Mapping[Any, bytes],
        behaviour: Mapping[Any, bytes],
        counters: Mapping[Any, bytes],
        now: float,
    ) -> CustomerState:
        updated: dict[str, float] = {}
        profile_values = self._plain(profile, "profile", updated)
        behaviour_values: dict[str, Any] = {}
        window_names: list[str] = []
        window_values: list[bytes] = []
        for key, value in behaviour.items():
            name = key.decode() if isinstance(key, bytes) else str(key)
            if value[:1] == windows.PREFIX:
                window_names.append(name)
                window_values.append(value)
            elif name == TIMESTAMP:
                updated["behaviour"] = float(value)
            else:
                behaviour_values[name] = load(value)
        if window_values:
            sums = windows.decode(window_values, self.widths, self.buckets, now)
            for row, name in enumerate(window_names):
                for col, label in enumerate(self.labels):
                    behaviour_values[name.replace("{w}", label)] = float(sums[row, col])
        behaviour_values.update(
            derived_features(profile_values, behaviour_values, self.features, now)
        )
        return CustomerState(
            customer_id=customer_id,
            profile=profile_values,
            behaviour=behaviour_values,
            counters=self._plain(counters, "counters", updated),
            known=bool(profile or behaviour or counters),
            updated=updated,
        )

    @staticmethod
    def _plain(raw: Mapping[Any, bytes], view: str, updated: dict[str, float]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in raw.items():
            name = key.decode() if isinstance(key, bytes) else str(key)
            if name == TIMESTAMP:
                updated[view] = float(value)
            else:
                out[name] = load(value)
        return out


def load(value: bytes) -> Any:
    """A stored value; a number beyond a double (a sum that overflowed) reads as null
    rather than failing the customer's whole read."""
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        try:
            number = float(value)
        except ValueError:
            return value.decode("utf-8", "replace")
        return number if math.isfinite(number) else None
