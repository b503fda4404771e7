"""Read catalogue folders: YAML documents with the line of every key, validated into
the domain's typed models. Problems are collected, never raised one at a time."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from engine.domain import Action, CatalogueSettings, GlobalRule
from engine.errors import Problem

SETTINGS_KEYS = frozenset({"channels", "customer_caps", "control"})


@dataclass
class Documents:
    """Everything a catalogue folder holds, with where each thing came from."""

    actions: list[Action] = field(default_factory=list)
    rules: list[GlobalRule] = field(default_factory=list)
    settings: CatalogueSettings = field(default_factory=CatalogueSettings)
    origins: dict[str, tuple[str, int]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


def read_folder(folder: Path) -> Documents:
    docs = Documents()
    files = sorted([*folder.rglob("*.yaml"), *folder.rglob("*.yml")]) if folder.is_dir() else []
    settings: list[CatalogueSettings] = []
    for path in files:
        source = str(path)
        for doc, line, key_lines in _documents(path, docs.problems):
            parsed = parse_document(doc, source, line, key_lines, docs.problems)
            if isinstance(parsed, Action):
                docs.actions.append(parsed)
                docs.origins.setdefault(parsed.id, (source, key_lines.get("eligibility", line)))
            elif isinstance(parsed, GlobalRule):
                docs.rules.append(parsed)
                docs.origins[f"rule:{parsed.rule}"] = (source, key_lines.get("require", line))
            elif isinstance(parsed, CatalogueSettings):
                settings.append(parsed)
                docs.origins.setdefault("settings", (source, line))
    if len(settings) > 1:
        docs.problems.append(Problem(*docs.origins["settings"], "more than one settings document"))
    if settings:
        docs.settings = settings[0]
    return docs


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
                yield data, node.start_mark.line + 1, dict(_key_lines(node))
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        problems.append(Problem(str(path), line, f"not valid YAML: {getattr(exc, 'problem', exc)}"))
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(str(path), 0, f"cannot read: {exc}"))


def _key_lines(node: yaml.Node, path: str = "") -> Iterable[tuple[str, int]]:
    """The line of every key, nested ones by their dotted path (``channels.web.caps.0``),
    so that a problem deep in a document is reported where it is."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value in node.value:
            key = f"{path}{key_node.value}"
            yield key, key_node.start_mark.line + 1
            yield from _key_lines(value, f"{key}.")
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            key = f"{path}{index}"
            yield key, item.start_mark.line + 1
            yield from _key_lines(item, f"{key}.")


def parse_document(
    doc: Any,
    source: str,
    line: int,
    key_lines: dict[str, int],
    problems: list[Problem],
    kind: str | None = None,
) -> Action | GlobalRule | CatalogueSettings | None:
    """One document as an action, a global rule or the settings; problems located."""
    if not isinstance(doc, dict):
        problems.append(Problem(source, line, "each document must be a mapping"))
        return None
    if kind is None:
        kind = "rule" if "rule" in doc else "settings" if set(doc) <= SETTINGS_KEYS else "action"
    models: dict[str, type[BaseModel]] = {"rule": GlobalRule, "settings": CatalogueSettings}
    model = models.get(kind, Action)
    try:
        parsed = model.model_validate(doc)
    except ValidationError as exc:
        for error in exc.errors():
            loc = error["loc"]
            field_name = ".".join(str(p) for p in loc) or "document"
            at = next(
                (
                    key_lines[key]
                    for depth in range(len(loc), 0, -1)
                    if (key := ".".join(str(p) for p in loc[:depth])) in key_lines
                ),
                line,
            )
            problems.append(Problem(source, at, f"{field_name}: {error['msg']}"))
        return None
    assert isinstance(parsed, Action | GlobalRule | CatalogueSettings)
    return parsed
