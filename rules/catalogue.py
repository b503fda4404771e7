"""Compile the action catalogue, its global rules and its settings into one immutable,
indexed :class:`Catalogue`.

Everything that can be done at load is done here: expressions compiled; rules that read
only the action settled; candidates indexed per (channel, placement) as index arrays;
request-level checks gathered into the screening matrix; arbitration compiled per
channel and placement. Every problem is collected and reported together, with its file
and line; nothing half-built is ever returned, so the caller keeps serving the last
good catalogue.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from engine.domain import Action, Arbitration, CatalogueSettings, ControlGroup, GlobalRule
from engine.errors import CatalogueError, Problem
from rules.arbitration import CompiledArbitration
from rules.contact import ContactRules
from rules.expressions import Expression, RuleSyntaxError, compile_expression
from rules.loader import parse_document, read_folder
from rules.screening import Check, Screener

EMPTY: Mapping[str, object] = {}
NO_ACTIONS = np.zeros(0, dtype=np.intp)
NO_ACTIONS.flags.writeable = False


@dataclass(frozen=True, slots=True)
class CompiledAction:
    index: int
    action: Action
    view: Mapping[str, object]
    checks: tuple[Check, ...]
    settled: tuple[str, ...]
    excluded_at_load: str | None = None


@dataclass(frozen=True)
class Catalogue:
    """Immutable; swapping one reference makes a new catalogue live."""

    version: str
    actions: tuple[CompiledAction, ...]
    rules: tuple[GlobalRule, ...]
    settings: CatalogueSettings
    index: Mapping[tuple[str, str | None], np.ndarray] = field(repr=False)
    screener: Screener = field(repr=False)
    contact: ContactRules = field(repr=False)
    arbitrations: Mapping[tuple[str, str | None], CompiledArbitration] = field(repr=False)
    views: tuple[Mapping[str, Any], ...] = field(repr=False)
    by_id: Mapping[str, CompiledAction] = field(repr=False)
    ids: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, dtype=object))

    def channel_names(self) -> frozenset[str]:
        return self._known[0]

    def placements(self, channel: str) -> list[str]:
        return list(self._known[1].get(channel, ()))

    @cached_property
    def _known(self) -> tuple[frozenset[str], dict[str, tuple[str, ...]]]:
        """Channels and their placements, worked out once (each request checks them)."""
        channels = {channel for channel, _ in self.index} | set(self.settings.channels)
        placements = {}
        for channel in channels:
            named = {p for c, p in self.index if c == channel and p is not None}
            config = self.settings.channels.get(channel)
            placements[channel] = tuple(sorted(named | set(config.placements if config else ())))
        return frozenset(channels), placements

    def default_placement(self, channel: str) -> str | None:
        config = self.settings.channels.get(channel)
        return config.default_placement if config else None

    def candidates(self, channel: str, placement: str | None) -> np.ndarray:
        found = self.index.get((channel, placement))
        if found is None:
            found = self.index.get((channel, None), NO_ACTIONS)
        return found

    def arbitration(self, channel: str, placement: str | None) -> CompiledArbitration:
        found = self.arbitrations.get((channel, placement)) or self.arbitrations.get(
            (channel, None)
        )
        return found or self.arbitrations[("", None)]

    def control(self) -> ControlGroup:
        return self.settings.control or ControlGroup()

    def control_share(self, channel: str, default: float) -> float:
        config = self.settings.channels.get(channel)
        if config is not None and config.control_share is not None:
            return config.control_share
        return self.settings.control.share if self.settings.control else default

    def budget_s(self, channel: str, default: float) -> float:
        """How long a decision on ``channel`` waits for the store, in seconds."""
        return self._budgets.get(channel, default)

    def diversity_codes(self, attribute: str) -> np.ndarray:
        """Each action's value of a diversity attribute as a number, worked out once per
        attribute: equal values share one, an action without the attribute has one of
        its own (a selection never skips it for another)."""
        found = self._diversity_codes.get(attribute)
        if found is None:
            codes: dict[Any, int] = {}
            found = np.empty(len(self.views), dtype=np.int64)
            for index, view in enumerate(self.views):
                value = view.get(attribute)
                found[index] = codes.setdefault(value, len(codes)) if value is not None else -1
            alone = found < 0
            found[alone] = np.arange(len(codes), len(codes) + int(alone.sum()))
            self._diversity_codes[attribute] = found
        return found

    @cached_property
    def _diversity_codes(self) -> dict[str, np.ndarray]:
        return {}

    @cached_property
    def _budgets(self) -> dict[str, float]:
        """The channels that set their own budget, in seconds (each request asks)."""
        return {
            channel: config.budget_ms / 1000
            for channel, config in self.settings.channels.items()
            if config.budget_ms is not None
        }


def build_catalogue(
    actions: Iterable[Action],
    rules: Iterable[GlobalRule] = (),
    settings: CatalogueSettings | None = None,
    origins: Mapping[str, tuple[str, int]] | None = None,
) -> Catalogue:
    """Compile validated documents; raises CatalogueError listing every problem."""
    actions = list(actions)
    rules = list(rules)
    settings = settings or CatalogueSettings()
    origins = origins or {}
    problems: list[Problem] = []
    unique: dict[str, Action] = {}
    for action in actions:
        if action.id in unique:
            source, line = origins.get(action.id, ("<catalogue>", 0))
            problems.append(Problem(source, line, f"action id {action.id!r} is defined twice"))
        unique[action.id] = action

    compiled_rules: list[tuple[GlobalRule, Expression | None, Expression]] = []
    for rule in rules:
        source, line = origins.get(f"rule:{rule.rule}", ("<rules>", 0))
        try:
            applies = compile_expression(rule.applies_to, source) if rule.applies_to else None
            require = compile_expression(rule.require, source)
        except RuleSyntaxError as exc:
            problems.append(Problem(source, line, f"rule {rule.rule}: {exc.message}"))
            continue
        compiled_rules.append((rule, applies, require))

    compiled: list[CompiledAction] = []
    for index, action in enumerate(unique.values()):
        source, line = origins.get(action.id, ("<catalogue>", 0))
        try:
            compiled.append(_compile_action(index, action, compiled_rules, source))
        except RuleSyntaxError as exc:
            problems.append(Problem(source, line, f"eligibility of {action.id}: {exc}"))

    plain = [c.action for c in compiled]
    arbitrations: dict[tuple[str, str | None], CompiledArbitration] = {}
    settings_at = origins.get("settings", ("<settings>", 0))
    try:
        arbitrations[("", None)] = CompiledArbitration(Arbitration(), plain)
        for channel, config in settings.channels.items():
            arbitrations[(channel, None)] = CompiledArbitration(config.arbitration, plain)
            for placement, arbitration in config.placement_arbitration.items():
                arbitrations[(channel, placement)] = CompiledArbitration(arbitration, plain)
    except RuleSyntaxError as exc:
        problems.append(Problem(settings_at[0], settings_at[1], f"context weight: {exc}"))
    if problems:
        raise CatalogueError(problems)

    by_place: dict[tuple[str, str | None], list[int]] = {}
    for item in compiled:
        if item.excluded_at_load:
            continue
        for channel in item.action.channels:
            declared = settings.channels.get(channel)
            places = item.action.placements or (declared.placements if declared else [])
            for place in [None, *places]:
                by_place.setdefault((channel, place), []).append(item.index)
    candidates = {key: _frozen(value) for key, value in by_place.items()}
    screener = Screener(
        [c.checks for c in compiled],
        [c.view for c in compiled],
        [c.action.valid_from.timestamp() if c.action.valid_from else None for c in compiled],
        [c.action.valid_to.timestamp() if c.action.valid_to else None for c in compiled],
    )
    screener.prepare([*candidates.values(), NO_ACTIONS])
    return Catalogue(
        version=_version(actions, rules, settings),
        actions=tuple(compiled),
        rules=tuple(rules),
        settings=settings,
        index=candidates,
        screener=screener,
        contact=ContactRules(plain, settings),
        arbitrations=arbitrations,
        views=tuple(c.view for c in compiled),
        by_id={c.action.id: c for c in compiled},
        ids=np.array([c.action.id for c in compiled], dtype=object),
    )


def _compile_action(
    index: int,
    action: Action,
    rules: list[tuple[GlobalRule, Expression | None, Expression]],
    source: str,
) -> CompiledAction:
    """Settle at load what depends on the action alone; keep the rest as checks.

    Global rules come first, then the action's own eligibility: a global rule is the
    better explanation of an exclusion."""
    view = action.rule_view()
    candidates: list[tuple[str, Expression]] = []
    for rule, applies, require in rules:
        if applies is not None and applies.roots <= {"action"}:
            if not applies.test(EMPTY, EMPTY, view, 0.0):
                continue
            candidates.append((rule.rule, require))
        elif applies is not None:
            candidates.append((rule.rule, _implies(applies, require)))
        else:
            candidates.append((rule.rule, require))
    if action.eligibility:
        candidates.append(("eligibility", compile_expression(action.eligibility, source)))
    checks: list[Check] = []
    settled: list[str] = []
    excluded: str | None = None
    for name, expression in candidates:
        if expression.roots <= {"action"}:
            if expression.test(EMPTY, EMPTY, view, 0.0):
                settled.append(name)
            elif excluded is None:
                excluded = name
        else:
            checks.append(Check(name, expression))
    return CompiledAction(index, action, view, tuple(checks), tuple(settled), excluded)


def _implies(applies: Expression, require: Expression) -> Expression:
    """``not applies or require`` as one expression, recompiled from both texts."""
    return compile_expression(f"not ({applies.text}) or ({require.text})")


def _version(actions: list[Action], rules: list[GlobalRule], settings: CatalogueSettings) -> str:
    payload = orjson.dumps(
        {
            "actions": sorted((a.model_dump(mode="json") for a in actions), key=lambda a: a["id"]),
            "rules": sorted((r.model_dump(mode="json") for r in rules), key=lambda r: r["rule"]),
            "settings": settings.model_dump(mode="json"),
        },
        option=orjson.OPT_SORT_KEYS,
    )
    return "p-" + hashlib.sha256(payload).hexdigest()[:12]


def load_catalogue(folder: Path, overrides: Mapping[str, Action | None] | None = None) -> Catalogue:
    """Read every YAML file below ``folder``; all problems at once.

    ``overrides`` (from the API): an action by id replaces or adds, ``None`` deletes."""
    docs = read_folder(folder)
    actions = docs.actions
    if overrides:
        actions = [a for a in actions if a.id not in overrides]
        actions += [a for a in overrides.values() if a is not None]
    try:
        catalogue = build_catalogue(actions, docs.rules, docs.settings, docs.origins)
    except CatalogueError as exc:
        raise CatalogueError(docs.problems + exc.problems) from None
    if docs.problems:
        raise CatalogueError(docs.problems)
    return catalogue


def parse_action(payload: Any, source: str = "request") -> Action:
    """Validate one action given as JSON (the API's PUT); field-located errors."""
    problems: list[Problem] = []
    parsed = parse_document(payload, source, 1, {}, problems, kind="action")
    if problems or not isinstance(parsed, Action):
        raise CatalogueError(problems or [Problem(source, 1, "not an action")])
    build_catalogue([parsed])  # compiles its eligibility, or raises with the problem
    return parsed


def _frozen(indices: list[int]) -> np.ndarray:
    """A placement's candidates, read-only: the screener plans for each array once, at
    load (:meth:`rules.screening.Screener.prepare`)."""
    array = np.asarray(indices, dtype=np.intp)
    array.flags.writeable = False
    return array
