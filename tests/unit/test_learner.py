"""The stream worker's learning loop (streams.learner): what it learns from the decision
log and the responses, and how it samples the unanswered."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from models.adaptive import AdaptiveModel, Observation
from models.adaptive_state import Delta
from streams.learner import Learner


class RecordingModel(AdaptiveModel):
    """A real adaptive model that also keeps the batches it learned."""

    def __init__(self) -> None:
        super().__init__(dims=2**12)
        self.batches: list[list[Observation]] = []

    def update_batch(self, observations: Iterable[Observation]) -> Delta:
        batch = list(observations)
        self.batches.append(batch)
        return super().update_batch(batch)


async def publish(_: bytes) -> str:
    return "1-0"


async def save(_: bytes, __: str) -> None:
    return None


def record(n: int) -> dict[str, Any]:
    return {
        "decision_id": f"d{n}",
        "features": {"segment": "gold"},
        "context": {"page_category": "shoes"},
        "learn": [{"action_id": "a", "view": {"id": "a", "category": "shoes"}, "offset": -2.0}],
    }


async def test_unanswered_actions_are_sampled_and_weighted_and_every_positive_is_kept() -> None:
    model = RecordingModel()
    learner = Learner(model, publish, save, label_window_s=0.0, negative_share=0.25, seed=5)
    for n in range(4000):
        learner.shown(**record(n))
    for n in range(0, 4000, 40):  # 100 clicks
        learner.responded(f"d{n}", "a", "click")
    learned = await learner.flush()
    batch = model.batches[0]
    positives = [o for o in batch if o.reward == 1.0]
    negatives = [o for o in batch if o.reward == 0.0]
    assert len(positives) == 100 and {o.weight for o in positives} == {1.0}
    assert 800 <= len(negatives) <= 1000  # a quarter of 3,900; binomial sd about 27
    assert {o.weight for o in negatives} == {4.0}
    assert learned == len(batch) and not learner.pending


async def test_by_default_every_unanswered_action_is_learned() -> None:
    model = RecordingModel()
    learner = Learner(model, publish, save, label_window_s=0.0)
    for n in range(50):
        learner.shown(**record(n))
    assert await learner.flush() == 50
    assert {(o.reward, o.weight) for o in model.batches[0]} == {(0.0, 1.0)}


@pytest.mark.parametrize("share", [0.0, -0.5, 1.5])
def test_a_share_outside_zero_to_one_is_refused(share: float) -> None:
    with pytest.raises(ValueError, match="negative_share"):
        Learner(AdaptiveModel(dims=2**10), publish, save, negative_share=share)
