"""The command line's argument types: each turns one argument's text into its value, or
refuses it with a message argparse prints beside the usage (exit 2), naming what was
expected and what came."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

from engine.config import folder_problem

__all__ = ["above_zero", "caller_rate", "folder", "whole"]


def caller_rate(text: str) -> tuple[str, float]:
    """``desk=0``: a caller's arrivals/s (0 leaves it out)."""
    from nba.load_offer import RATE_UNITS

    kind, sep, rate = text.partition("=")
    kind = kind.strip()
    if kind == "web":
        raise argparse.ArgumentTypeError("the web rate is --rate")
    if kind not in RATE_UNITS:
        raise argparse.ArgumentTypeError(f"unknown caller {kind!r}; known: {sorted(RATE_UNITS)}")
    try:
        value = float(rate)
    except ValueError:
        value = -1.0
    if not sep or not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected CALLER=RATE with RATE >= 0, got {text!r}")
    return kind, value


def above_zero(text: str) -> float:
    """Seconds or a rate: a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}")
    return value


def whole(low: int, high: int | None = None) -> Callable[[str], int]:
    """A whole number from ``low`` (up to ``high``)."""
    bounds = f"from {low} to {high}" if high is not None else f"of at least {low}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected a whole number {bounds}, got {text!r}")
        return value

    return parse


def folder(text: str) -> str:
    """A folder, or one that can be made."""
    problem = folder_problem(Path(text))
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text
