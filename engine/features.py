"""Feature definitions as data: which views a customer has, which behaviour counters
are kept over which sliding windows, and how value classes are derived.

Loaded from YAML into typed models with ``extra="forbid"`` and cross-checked once at
start-up; the stream worker writes by it and the store reads by it.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_FEATURES = Path(__file__).resolve().parent / "features.yaml"
_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
EVENT_TYPES = ("page_view", "product_view", "add_to_cart", "search", "purchase")


def seconds(duration: str) -> int:
    match = _DURATION.match(duration)
    if match is None:
        raise ValueError(f"{duration!r} is not a duration such as 5m, 1h, 24h or 7d")
    return int(match.group(1)) * _UNITS[match.group(2)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ViewConfig(_Strict):
    ttl_days: float = Field(default=400, gt=0)


class BehaviourConfig(ViewConfig):
    """Counters over sliding windows, each kept as ``buckets`` time buckets."""

    windows: list[str] = Field(default_factory=lambda: ["5m", "1h", "24h", "7d"], min_length=1)
    buckets: int = Field(default=6, ge=2, le=60)
    counts: list[str] = Field(default_factory=lambda: list(EVENT_TYPES))
    per_category: list[str] = Field(default_factory=lambda: ["page_view", "product_view"])
    session_gap_minutes: float = Field(default=30, gt=0)
    max_categories: int = Field(default=64, ge=1, le=1000)

    @field_validator("windows")
    @classmethod
    def _windows(cls, value: list[str]) -> list[str]:
        for window in value:
            seconds(window)
        if len(set(value)) != len(value):
            raise ValueError("windows must be different")
        return sorted(value, key=seconds)

    @model_validator(mode="after")
    def _known(self) -> BehaviourConfig:
        unknown = (set(self.counts) | set(self.per_category)) - set(EVENT_TYPES)
        if unknown:
            raise ValueError(f"unknown event types {sorted(unknown)}; known: {EVENT_TYPES}")
        return self

    @cached_property
    def widths(self) -> list[float]:
        """Bucket width of each window, in seconds."""
        return [seconds(w) / self.buckets for w in self.windows]


class ValueConfig(_Strict):
    """ABC class by revenue, and a simple CLV estimate from the order history."""

    abc_thresholds: dict[str, float] = Field(default_factory=lambda: {"A": 1000.0, "B": 250.0})
    clv_horizon_years: float = Field(default=3.0, gt=0)
    margin: float = Field(default=0.3, gt=0, le=1)


class Views(_Strict):
    profile: ViewConfig = Field(default_factory=ViewConfig)
    behaviour: BehaviourConfig = Field(default_factory=BehaviourConfig)
    contacts: ViewConfig = Field(default_factory=ViewConfig)
    value: ValueConfig = Field(default_factory=ValueConfig)


class FeatureConfig(_Strict):
    entity: str = "customer"
    views: Views = Field(default_factory=Views)

    @field_validator("entity")
    @classmethod
    def _entity(cls, value: str) -> str:
        if value != "customer":
            raise ValueError("the only entity is customer")
        return value


def load_features(path: Path = DEFAULT_FEATURES) -> FeatureConfig:
    return FeatureConfig.model_validate(yaml.safe_load(path.read_text()) or {})


def field_layout(widths: list[float], buckets: int) -> str:
    """The static part of a window write: bucket widths and slots (feature_store.windows)."""
    return ",".join(repr(float(w)) for w in widths) + f";{buckets + 1}"


def derived_features(
    profile: dict[str, object], behaviour: dict[str, object], config: FeatureConfig, now: float
) -> dict[str, object]:
    """Features computed at read time from stored ones: recency and the value view."""
    out: dict[str, object] = {}
    last_seen = behaviour.get("last_seen")
    if isinstance(last_seen, int | float):
        out["minutes_since_seen"] = max(0.0, (now - last_seen) / 60.0)
    revenue = profile.get("revenue")
    if isinstance(revenue, int | float) and not isinstance(revenue, bool):
        value = config.views.value
        out["abc_class"] = next(
            (
                name
                for name, floor in sorted(value.abc_thresholds.items(), key=lambda kv: -kv[1])
                if revenue >= floor
            ),
            "C",
        )
        tenure = profile.get("tenure_months")
        years = tenure / 12.0 if isinstance(tenure, int | float) else 1.0
        yearly = revenue / max(years, 1.0)
        out["clv_estimate"] = round(yearly * value.clv_horizon_years * value.margin, 2)
    return out
