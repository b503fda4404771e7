"""Domain types shared by every part of the engine.

The catalogue types are pydantic models with ``extra="forbid"`` (they are loaded from
YAML and JSON written by people); the hot-path types are plain slotted dataclasses.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from engine.validation import Worded

ActionKind = Literal["offer", "banner", "activity"]
Outcome = Literal["impression", "click", "accept", "decline", "convert"]
OUTCOMES: tuple[str, ...] = ("impression", "click", "accept", "decline", "convert")
Scalar = str | int | float | bool
AttributeValue = Annotated[Scalar, Worded("must be a string, number or boolean")]
ACTION_ID = re.compile(r"^[a-z0-9-]{1,64}$")


def _expression_text(value: Any) -> Any:
    """YAML reads a bare ``true``/``false`` as a boolean; as a rule it means the same."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


class Window(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    count: int = Field(ge=0, le=50)  # MAX_STAMPS: the store keeps the last 50 impressions
    days: float = Field(gt=0, le=366)


class ContactPolicy(BaseModel):
    """Per-action limits that keep the company from pestering people."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_impressions: Window | None = None
    suppress_after_decline_days: float | None = Field(default=None, ge=0)


class Action(BaseModel):
    """One entry of the action catalogue (contract §5)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9-]{1,64}$")
    kind: ActionKind
    name: str = Field(min_length=1, max_length=200)
    channels: list[str] = Field(min_length=1)
    placements: list[str] | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    value: float = Field(default=1.0, ge=0)
    lever: float = Field(default=1.0, ge=0)
    attributes: dict[str, AttributeValue] = Field(default_factory=dict)
    eligibility: str | None = None
    contact_policy: ContactPolicy | None = None
    content: dict[str, Any] = Field(default_factory=dict)
    prior: float = Field(default=0.02, gt=0, lt=1)
    default_for: list[str] = Field(default_factory=list)

    _eligibility_text = field_validator("eligibility", mode="before")(_expression_text)

    @field_validator("valid_from", "valid_to")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("needs a time zone, for example 2026-06-01T00:00:00Z")
        return value

    @model_validator(mode="after")
    def _window(self) -> Action:
        if self.valid_from and self.valid_to and self.valid_to <= self.valid_from:
            raise ValueError("valid_to must come after valid_from")
        return self

    def rule_view(self) -> dict[str, object]:
        """What rules see as ``action``: its scalar fields with its attributes on top."""
        view: dict[str, object] = {
            "id": self.id,
            "kind": self.kind,
            "name": self.name,
            "value": self.value,
            "lever": self.lever,
            "channels": list(self.channels),
        }
        view.update(self.attributes)
        return view


class GlobalRule(BaseModel):
    """A rule shared by many actions: where ``applies_to`` holds, ``require`` must hold."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    rule: str = Field(pattern=r"^[a-z0-9-]{1,64}$")
    description: str = ""
    applies_to: str | None = None
    require: str

    _texts = field_validator("applies_to", "require", mode="before")(_expression_text)


MARKETING_KINDS: tuple[ActionKind, ...] = ("offer", "banner")
MAX_STAMPS = 50  # timestamps kept per contact counter: caps may count up to this many


class Cap(BaseModel):
    """At most ``count`` contacts in ``days`` by the actions it covers (by kind and channel).

    A cap counts decisions: room is reserved atomically when an action is chosen, which
    is what outbound channels need (an email is a contact when it is decided at send
    time). Inbound channels limit what is shown with per-action impression caps."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[a-z0-9-]{1,64}$")
    count: int = Field(ge=0, le=MAX_STAMPS)
    days: float = Field(gt=0, le=366)
    kinds: list[ActionKind] = Field(default_factory=lambda: list(MARKETING_KINDS))
    channels: list[str] | None = None  # customer caps: which channels count (None: all)


class ContextWeight(BaseModel):
    """Multiplies the priority of the candidates for which ``when`` holds."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    when: str
    weight: float = Field(ge=0)

    _when_text = field_validator("when", mode="before")(_expression_text)


class Arbitration(BaseModel):
    """priority = propensity^a × context weight × value^b × lever^c × kind weight."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    propensity_power: float = Field(default=1.0, ge=0, le=10)
    value_power: float = Field(default=1.0, ge=0, le=10)
    lever_power: float = Field(default=1.0, ge=0, le=10)
    kind_weights: dict[ActionKind, float] = Field(default_factory=dict)
    context_weights: list[ContextWeight] = Field(default_factory=list)
    diversity: str | None = None  # an action attribute: at most one action per value


class ChannelConfig(BaseModel):
    """Placements a channel declares beyond those its actions name, its default, its caps,
    its arbitration (per placement where it differs), its hold-out share and how long its
    callers wait for the customer's features before the fallback answers (a page render
    waits milliseconds; an agent with the customer on the line can wait a tenth of a
    second, and a default suggestion costs more there than the wait)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    placements: list[str] = Field(default_factory=list)
    default_placement: str | None = None
    caps: list[Cap] = Field(default_factory=list)
    arbitration: Arbitration = Field(default_factory=Arbitration)
    placement_arbitration: dict[str, Arbitration] = Field(default_factory=dict)
    control_share: float | None = Field(default=None, ge=0, le=1)
    budget_ms: float | None = Field(default=None, gt=0, le=10_000)  # None: the service's


class ControlGroup(BaseModel):
    """The hold-out: a salted hash of the customer id, sticky for ``sticky_days``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    share: float = Field(default=0.05, ge=0, le=1)
    salt: str = Field(default="nba-control", min_length=1)
    sticky_days: float = Field(default=90.0, gt=0)


class CatalogueSettings(BaseModel):
    """The catalogue's settings document: channels, customer-wide caps, control group."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    channels: dict[str, ChannelConfig] = Field(default_factory=dict)
    customer_caps: list[Cap] = Field(default_factory=list)
    control: ControlGroup | None = None


@dataclass(slots=True)
class CustomerState:
    """Everything the store holds about one customer, fetched in one round trip."""

    customer_id: str
    profile: dict[str, Any] = field(default_factory=dict)
    behaviour: dict[str, Any] = field(default_factory=dict)
    counters: dict[str, Any] = field(default_factory=dict)
    known: bool = False
    updated: dict[str, float] = field(default_factory=dict)  # view -> time of last write

    def features(self) -> dict[str, Any]:
        """The ``customer`` mapping rules and models read: profile, then behaviour."""
        merged = dict(self.profile)
        merged.update(self.behaviour)
        return merged


@dataclass(slots=True)
class Candidate:
    """An action considered for one decision, with what arbitration made of it."""

    index: int
    action: Action
    propensity: float = 0.0
    weight: float = 1.0
    score: float = 0.0
    passed: list[str] = field(default_factory=list)
    excluded_by: str | None = None


def decision_id(control: bool, channel: str) -> str:
    """``d-`` + group (t/c) + 24 hex + ``-`` + channel: a response that names its decision
    tells the stream worker which group and channel it belongs to, with no lookup."""
    return f"d-{'c' if control else 't'}{os.urandom(12).hex()}-{channel}"


def parse_decision_id(value: str | None) -> tuple[str, str] | None:
    """(group, channel) of a decision id made by :func:`decision_id`, else None."""
    if not value or len(value) < 29 or not value.startswith("d-") or value[27] != "-":
        return None
    group = {"t": "treatment", "c": "control"}.get(value[2])
    return (group, value[28:]) if group else None
