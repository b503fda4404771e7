"""From stored view values to the features a decision reads (shared by every backend)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from engine.domain import CustomerState
from engine.features import FeatureConfig, derived_features
from feature_store import windows

TIMESTAMP = "_ts"
RawViews = tuple[str, Mapping[Any, bytes], Mapping[Any, bytes], Mapping[Any, bytes]]
_NAMES_KEPT = 10_000


class ViewDecoder:
    """Turns a customer's raw hashes into features; runs once per decision, so what
    depends only on a field's name (its text, the feature names a window counter
    expands to) is worked out the first time that name is seen and kept."""

    def __init__(self, features: FeatureConfig) -> None:
        self.features = features
        behaviour = features.views.behaviour
        self.labels = list(behaviour.windows)
        self.windows = windows.WindowReader(behaviour.widths, behaviour.buckets)
        self._names: dict[Any, str] = {}
        self._expanded: dict[Any, tuple[str, ...]] = {}

    def state(
        self,
        customer_id: str,
        profile: Mapping[Any, bytes],
        behaviour: Mapping[Any, bytes],
        counters: Mapping[Any, bytes],
        now: float,
    ) -> CustomerState:
        return self.states([(customer_id, profile, behaviour, counters)], now)[0]

    def states(self, rows: Sequence[RawViews], now: float) -> list[CustomerState]:
        """Several customers at once (a batch): their window counters are summed in one
        numpy pass, whose fixed cost would otherwise be paid per customer."""
        parts = [self._split(row) for row in rows]
        values = [v for part in parts for v in part[3]]
        sums = self.windows.sums(values, now).ravel().tolist() if values else []
        out = []
        at = 0
        for (customer_id, profile, behaviour, counters), part in zip(rows, parts, strict=True):
            profile_values, behaviour_values, names, _, updated = part
            if names:
                behaviour_values.update(zip(names, sums[at : at + len(names)], strict=True))
                at += len(names)
            behaviour_values.update(
                derived_features(profile_values, behaviour_values, self.features, now)
            )
            out.append(
                CustomerState(
                    customer_id=customer_id,
                    profile=profile_values,
                    behaviour=behaviour_values,
                    counters=self._plain(counters, "counters", updated),
                    known=bool(profile or behaviour or counters),
                    updated=updated,
                )
            )
        return out

    def _split(
        self, row: RawViews
    ) -> tuple[dict[str, Any], dict[str, Any], list[str], list[bytes], dict[str, float]]:
        """Plain values decoded; window counters set aside with their feature names."""
        _, profile, behaviour, _ = row
        updated: dict[str, float] = {}
        profile_values = self._plain(profile, "profile", updated)
        behaviour_values: dict[str, Any] = {}
        window_names: list[str] = []
        window_values: list[bytes] = []
        expanded = self._expanded
        for key, value in behaviour.items():
            if value[:1] == windows.PREFIX:
                window_names += expanded.get(key) or self._expand(key)
                window_values.append(value)
                continue
            name = self._name(key)
            if name == TIMESTAMP:
                updated["behaviour"] = float(value)
            else:
                behaviour_values[name] = load(value)
        return profile_values, behaviour_values, window_names, window_values, updated

    def _name(self, key: Any) -> str:
        name = self._names.get(key)
        if name is None:
            name = key.decode() if isinstance(key, bytes) else str(key)
            if len(self._names) < _NAMES_KEPT:  # field names are a schema, not data;
                self._names[key] = name  # the bound only guards against a flood
        return name

    def _expand(self, key: Any) -> tuple[str, ...]:
        """A window counter's feature names, one per window, in the reader's order."""
        name = self._name(key)
        names = tuple(name.replace("{w}", label) for label in self.labels)
        if len(self._expanded) < _NAMES_KEPT:
            self._expanded[key] = names
        return names

    def _plain(
        self, raw: Mapping[Any, bytes], view: str, updated: dict[str, float]
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        names = self._names
        for key, value in raw.items():
            name = names.get(key) or self._name(key)
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
