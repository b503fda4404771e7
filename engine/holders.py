"""Live references to the catalogue and the model: readers take one reference per
decision; a reload builds the new value fully and swaps the reference atomically."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.ports import Scorer
from rules.catalogue import Catalogue, build_catalogue


class PriorScorer:
    """Cold start: each action's prior propensity, until a model is registered."""

    version = "prior"

    def __init__(self, priors: Sequence[float]) -> None:
        self.priors = np.asarray(priors, dtype=np.float64)

    def score(
        self,
        customer: Mapping[str, Any],
        context: Mapping[str, Any],
        action_indices: np.ndarray,
    ) -> np.ndarray:
        found: np.ndarray = self.priors[action_indices]
        return found


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one decision uses, taken once: a catalogue and a scorer bound to it."""

    catalogue: Catalogue
    scorer: Scorer
    challenger: Scorer | None = None  # scored in shadow: logged, never decides


class LiveState:
    """Holds the current :class:`Snapshot`; every change builds a new one and swaps it."""

    def __init__(
        self, catalogue: Catalogue | None = None, model: Any = None, challenger: Any = None
    ) -> None:
        self.model: Any = model  # an object with .bind(action views) -> Scorer, or None
        self.challenger: Any = challenger
        self.snapshot = self._build(catalogue or build_catalogue([]), model, challenger)

    @staticmethod
    def _build(catalogue: Catalogue, model: Any, challenger: Any = None) -> Snapshot:
        views = [a.view for a in catalogue.actions]
        scorer: Scorer = (
            model.bind(views)
            if model is not None
            else PriorScorer([a.action.prior for a in catalogue.actions])
        )
        shadow = challenger.bind(views) if challenger is not None else None
        return Snapshot(catalogue, scorer, shadow)

    @property
    def catalogue(self) -> Catalogue:
        return self.snapshot.catalogue

    def set_catalogue(self, catalogue: Catalogue) -> None:
        self.snapshot = self._build(catalogue, self.model, self.challenger)

    def set_model(self, model: Any, challenger: Any = None) -> None:
        """Bind both first, then swap one reference: no decision sees half a change."""
        self.snapshot = self._build(self.snapshot.catalogue, model, challenger)
        self.model = model
        self.challenger = challenger
