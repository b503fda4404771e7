"""Read a logged-decision file (contract §6, JSON Lines) into a training set."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from models.training import TrainingSet


def _timestamp(value: Any, line: int) -> float:
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    raise ValueError(f"line {line}: timestamp must be a number or an ISO-8601 string")


def read_log(path: Path, action_views: Mapping[str, Mapping[str, Any]]) -> TrainingSet:
    """One row per shown action; the action's catalogue attributes join by id. (The
    ``propensity``, each action's chance of being among those shown, is for ``nba
    evaluate``; training does not weight by it.)"""
    data = TrainingSet()
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                row = orjson.loads(raw)
                action_id = str(row["action_id"])
                features = row.get("features") or {}
                context = {"channel": row.get("channel"), "placement": row.get("placement")}
                action = {"action_id": action_id, **action_views.get(action_id, {})}
                data.add(
                    features,
                    context,
                    action,
                    int(float(row.get("reward") or 0) > 0),
                    _timestamp(row["timestamp"], number),
                )
            except (KeyError, ValueError, TypeError, orjson.JSONDecodeError) as exc:
                raise ValueError(f"{path}:{number}: {exc}") from None
    return data
