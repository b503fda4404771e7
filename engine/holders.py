"""Live references to the catalogue and the model: readers take one reference per
decision; a reload builds the new value fully and swaps the reference atomically."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.ports import Scorer
from rules.catalogue import Catalogue, build_catalogue

Blend = Callable[[Scorer | None, Sequence[Mapping[str, Any]], Sequence[float]], Scorer]


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
        self,
        catalogue: Catalogue | None = None,
        model: Any = None,
        challenger: Any = None,
        blend: Blend | None = None,
    ) -> None:
        self.model: Any = model  # an object with .bind(action views) -> Scorer, or None
        self.challenger: Any = challenger
        self.blend = blend  # the adaptive model on top of the base scorer, when enabled
        self.snapshot = self._build(catalogue or build_catalogue([]), model, challenger)

    def _build(self, catalogue: Catalogue, model: Any, challenger: Any = None) -> Snapshot:
        views = [a.view for a in catalogue.actions]
        priors = [a.action.prior for a in catalogue.actions]
        base: Scorer | None = model.bind(views) if model is not None else None
        if self.blend is not None:
            scorer = self.blend(base, views, priors)
        else:
            scorer = base if base is not None else PriorScorer(priors)
        shadow = challenger.bind(views) if challenger is not None else None
        return Snapshot(catalogue, scorer, shadow)

    def set_blend(self, blend: Blend | None) -> None:
        self.blend = blend
        self.snapshot = self._build(self.snapshot.catalogue, self.model, self.challenger)

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
