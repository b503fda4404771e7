"""Load the action catalogue and its rule files, check everything, compile once.

A folder of YAML files holds three kinds of document (several per file, ``---``
separated): actions (contract §5), global rules (``rule:`` + ``require:``), and one
optional channel configuration (``channels:``). Every problem in every file is
collected and reported together with its file and line; nothing half-loaded is
ever returned, so the caller keeps serving the last good catalogue.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml
from pydantic import ValidationError

from engine.domain import Action, ChannelConfig, GlobalRule
from engine.errors import CatalogueError, Problem
from rules.expressions import Expression, RuleSyntaxError, compile_expression

EMPTY: Mapping[str, object] = {}


@dataclass(frozen=True, slots=True)
class Check:
    """A named condition a candidate must pass for one request."""

    name: str
    expression: Expression


@dataclass(frozen=True, slots=True)
class CompiledAction:
    index: int
    action: Action
    view: Mapping[str, object]
    checks: tuple[Check, ...]
    settled: tuple[str, ...]
    valid_from: float | None
    valid_to: float | None
    excluded_at_load: str | None = None

    def in_window(self, now: float) -> bool:
        if self.valid_from is not None and now < self.valid_from:
            return False
        return self.valid_to is None or now <= self.valid_to


@dataclass(frozen=True)
class Catalogue:
    """An immutable, indexed catalogue; swapping one reference makes a new one live."""

    version: str
    actions: tuple[CompiledAction, ...]
    rules: tuple[GlobalRule, ...]
    channels: Mapping[str, ChannelConfig]
    index: Mapping[tuple[str, str | None], tuple[CompiledAction, ...]] = field(repr=False)

    @property
    def by_id(self) -> dict[str, CompiledAction]:
        return {a.action.id: a for a in self.actions}

    def channel_names(self) -> set[str]:
        return {channel for channel, _ in self.index} | set(self.channels)

    def placements(self, channel: str) -> list[str]:
        named = {p for c, p in self.index if c == channel and p is not None}
        config = self.channels.get(channel)
        return sorted(named | set(config.placements if config else ()))

    def default_placement(self, channel: str) -> str | None:
        config = self.channels.get(channel)
        return config.default_placement if config else None

    def candidates(self, channel: str, placement: str | None) -> tuple[CompiledAction, ...]:
        return self.index.get((channel, placement)) or self.index.get((channel, None), ())


def build_catalogue(
    actions: Iterable[Action],
    rules: Iterable[GlobalRule] = (),
    channels: Mapping[str, ChannelConfig] | None = None,
    origins: Mapping[str, tuple[str, int]] | None = None,
) -> Catalogue:
    """Compile validated documents; raises CatalogueError listing every bad expression."""
    actions = list(actions)
    rules = list(rules)
    channels = dict(channels or {})
    origins = origins or {}
    problems: list[Problem] = []
    seen: dict[str, Action] = {}
    for action in actions:
        if action.id in seen:
            source, line = origins.get(action.id, ("<catalogue>", 0))
            problems.append(Problem(source, line, f"action id {action.id!r} is defined twice"))
        seen[action.id] = action

    compiled_rules: list[tuple[GlobalRule, Expression | None, Expression]] = []
    for rule in rules:
        source, line = origins.get(f"rule:{rule.rule}", ("<rules>", 0))
        try:
            applies = compile_expression(rule.applies_to, source) if rule.applies_to else None
            require = compile_expression(rule.require, source)
        except RuleSyntaxError as exc:
            problems.append(
                Problem(source, line + exc.line - 1, f"rule {rule.rule}: {exc.message}")
            )
            continue
        compiled_rules.append((rule, applies, require))

    compiled: list[CompiledAction] = []
    for index, action in enumerate(seen.values()):
        source, line = origins.get(action.id, ("<catalogue>", 0))
        try:
            compiled.append(_compile_action(index, action, compiled_rules, source))
        except RuleSyntaxError as exc:
            problems.append(Problem(source, line, f"eligibility of {action.id}: {exc}"))
    if problems:
        raise CatalogueError(problems)

    by_place: dict[tuple[str, str | None], list[CompiledAction]] = {}
    for item in compiled:
        if item.excluded_at_load:
            continue
        for channel in item.action.channels:
            config = channels.get(channel)
            places = item.action.placements or (config.placements if config else [])
            for placement in [None, *places]:
                by_place.setdefault((channel, placement), []).append(item)
    version = _version(actions, rules, channels)
    return Catalogue(
        version=version,
        actions=tuple(compiled),
        rules=tuple(rules),
        channels=channels,
        index={key: tuple(value) for key, value in by_place.items()},
    )


def _compile_action(
    index: int,
    action: Action,
    rules: list[tuple[GlobalRule, Expression | None, Expression]],
    source: str,
) -> CompiledAction:
    """Settle at load what depends on the action alone; keep the rest as checks."""
    view = action.rule_view()
    checks: list[Check] = []
    settled: list[str] = []
    excluded: str | None = None
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
    if action.eligibility:  # after the global rules: those explain an exclusion first
        candidates.append(("eligibility", compile_expression(action.eligibility, source)))
    for name, expression in candidates:
        if expression.roots <= {"action"}:
            if expression.test(EMPTY, EMPTY, view, 0.0):
                settled.append(name)
            elif excluded is None:
                excluded = name
        else:
            checks.append(Check(name, expression))
    return CompiledAction(
        index=index,
        action=action,
        view=view,
        checks=tuple(checks),
        settled=tuple(settled),
        valid_from=action.valid_from.timestamp() if action.valid_from else None,
        valid_to=action.valid_to.timestamp() if action.valid_to else None,
        excluded_at_load=excluded,
    )


def _implies(applies: Expression, require: Expression) -> Expression:
    """``not applies or require`` as one expression, recompiled from both texts."""
    return compile_expression(f"not ({applies.text}) or ({require.text})")


def _version(
    actions: list[Action], rules: list[GlobalRule], channels: Mapping[str, ChannelConfig]
) -> str:
    payload = orjson.dumps(
        {
            "actions": sorted((a.model_dump(mode="json") for a in actions), key=lambda a: a["id"]),
            "rules": sorted((r.model_dump(mode="json") for r in rules), key=lambda r: r["rule"]),
            "channels": {k: v.model_dump(mode="json") for k, v in sorted(channels.items())},
        },
        option=orjson.OPT_SORT_KEYS,
    )
    return "p-" + hashlib.sha256(payload).hexdigest()[:12]


def load_catalogue(folder: Path) -> Catalogue:
    """Read every ``*.yaml``/``*.yml`` file below ``folder``; all problems at once."""
    actions: list[Action] = []
    rules: list[GlobalRule] = []
    channels: dict[str, ChannelConfig] = {}
    origins: dict[str, tuple[str, int]] = {}
    problems: list[Problem] = []
    files = sorted([*folder.rglob("*.yaml"), *folder.rglob("*.yml")]) if folder.is_dir() else []
    for path in files:
        source = str(path)
        for doc, line, key_lines in _documents(path, problems):
            parsed = _parse_document(doc, source, line, key_lines, problems)
            if isinstance(parsed, Action):
                actions.append(parsed)
                origins.setdefault(parsed.id, (source, key_lines.get("eligibility", line)))
            elif isinstance(parsed, GlobalRule):
                rules.append(parsed)
                origins[f"rule:{parsed.rule}"] = (source, key_lines.get("require", line))
            elif isinstance(parsed, dict):
                channels.update(parsed)
    try:
        catalogue = build_catalogue(actions, rules, channels, origins)
    except CatalogueError as exc:
        raise CatalogueError(problems + exc.problems) from None
    if problems:
        raise CatalogueError(problems)
    return catalogue


def parse_action(payload: Any, source: str = "request") -> Action:
    """Validate one action given as JSON (the API's PUT); field-located errors."""
    problems: list[Problem] = []
    parsed = _parse_document(payload, source, 1, {}, problems, kind="action")
    if problems or not isinstance(parsed, Action):
        raise CatalogueError(problems or [Problem(source, 1, "not an action")])
    build_catalogue([parsed])  # compiles its eligibility, or raises with the problem
    return parsed


def _documents(path: Path, problems: list[Problem]) -> Iterable[tuple[Any, int, dict[str, int]]]:
    try:
        text = path.read_text(encoding="utf-8")
        loader = yaml.SafeLoader(text)
        try:
            while loader.check_node():
                node = loader.get_node()
                if node is None:
                    continue
                data = loader.construct_document(node)
                key_lines: dict[str, int] = {}
                if isinstance(node, yaml.MappingNode):
                    for key_node, _ in node.value:
                        key_lines[str(key_node.value)] = key_node.start_mark.line + 1
                yield data, node.start_mark.line + 1, key_lines
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        problems.append(Problem(str(path), line, f"not valid YAML: {getattr(exc, 'problem', exc)}"))
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(str(path), 0, f"cannot read: {exc}"))


def _parse_document(
    doc: Any,
    source: str,
    line: int,
    key_lines: dict[str, int],
    problems: list[Problem],
    kind: str | None = None,
) -> Action | GlobalRule | dict[str, ChannelConfig] | None:
    if not isinstance(doc, dict):
        problems.append(Problem(source, line, "each document must be a mapping"))
        return None
    if kind is None:
        kind = "rule" if "rule" in doc else "channels" if set(doc) == {"channels"} else "action"
    try:
        if kind == "rule":
            return GlobalRule.model_validate(doc)
        if kind == "channels":
            raw = doc["channels"]
            if not isinstance(raw, dict):
                raise TypeError("channels must map a channel name to its configuration")
            return {str(k): ChannelConfig.model_validate(v or {}) for k, v in raw.items()}
        return Action.model_validate(doc)
    except ValidationError as exc:
        for error in exc.errors():
            loc = error["loc"]
            field_name = ".".join(str(p) for p in loc) or "document"
            at = key_lines.get(str(loc[0]), line) if loc else line
            problems.append(Problem(source, at, f"{field_name}: {error['msg']}"))
    except TypeError as exc:
        problems.append(Problem(source, line, str(exc)))
    return None
