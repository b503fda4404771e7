"""The paired down-sampling experiment (benchmarks/negative_share.py), on a small world."""

from __future__ import annotations

import json
import random
from pathlib import Path

from benchmarks.negative_share import main, sampled
from models.adaptive import Observation


def test_sampling_keeps_every_click_and_weights_what_it_keeps() -> None:
    stream = [Observation({}, {}, {"id": "a"}, float(n % 10 == 0)) for n in range(4000)]
    kept = sampled(stream, 0.25, random.Random(3))
    assert len(kept) == len(stream)  # aligned with the stream, a gap where dropped
    assert [k is s for k, s in zip(kept, stream, strict=True) if s.reward] == [True] * 400
    negatives = [k for k, s in zip(kept, stream, strict=True) if not s.reward and k is not None]
    assert 800 <= len(negatives) <= 1000  # a quarter of 3,600; binomial sd about 26
    assert {k.weight for k in negatives} == {4.0}
    assert sampled(stream, 1.0, random.Random(3)) == stream


def test_the_experiment_writes_its_figures_and_chart(tmp_path: Path) -> None:
    args = ["--seeds", "2", "--shares", "1", "0.25", "--lengths", "300", "600"]
    assert main([*args, "--held-out", "100", "--customers", "300", "--out", str(tmp_path)]) == 0
    [path] = tmp_path.glob("*-negative-share.json")
    assert path.with_suffix(".png").stat().st_size > 0
    summary = json.loads(path.read_text())["summary"]
    assert summary["seeds"] == 2 and set(summary["shares"]) == {"1.0", "0.25"}
    full, quarter = summary["shares"]["1.0"], summary["shares"]["0.25"]
    assert [p["length"] for p in quarter["points"]] == [300, 600]
    assert all(p["value_minus_full"]["median"] == 0 for p in full["points"])  # paired
    assert quarter["points"][-1]["observations"] < full["points"][-1]["observations"]
    assert all(0 < p["kl"] < 1 for p in quarter["points"])
