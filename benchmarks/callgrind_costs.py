"""A Python program's counted parts under valgrind's callgrind, and their self costs by
shared object and by function.

The program switches counting on and off itself (:func:`switch`): a two-line C helper,
compiled with gcc when first needed, wraps callgrind's client requests, which are no-ops
outside valgrind. ``callgrind_annotate`` lists functions; the question here is coarser
and steadier: how the counted instructions split between the interpreter, numpy, ONNX
Runtime, the compiled (numba) kernels, orjson and the C library. Only the output's cost
lines that follow a function (its own cost) count; the line after ``calls=`` is a
callee's inclusive cost. Names may be compressed (``(7) name`` defines id 7, ``(7)``
reuses it); positions may be relative (``+3``, ``-2``, ``*``): only the events after the
position are read.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

RESULTS = Path(__file__).resolve().parent / "results"
SWITCH_ENV = "NBA_CALLGRIND_SWITCH"  # where the counted program finds the helper
_SWITCH_SOURCE = """#include <valgrind/callgrind.h>
void instrument(void) { CALLGRIND_START_INSTRUMENTATION; }
void toggle(void) { CALLGRIND_TOGGLE_COLLECT; }
"""

HEADLINE = ("Ir", "ILmr", "DLmr", "DLmw")  # instructions, and the last level's misses
_LEVEL = re.compile(r"'\d+$")  # callgrind marks a recursive call's level: f'2
_NAMED = re.compile(r"^\((\d+)\)(?: (.*))?$")
JIT = "compiled at run time"  # code with no shared object: numba's kernels, ONNX's JIT


def _name(value: str, names: dict[str, str]) -> str:
    match = _NAMED.match(value)
    if not match:
        return value
    ident, text = match.groups()
    if text is not None:
        names[ident] = text
    return names.get(ident, value)


def object_label(path: str) -> str:
    """A shared object's short name: its file name's first part, or :data:`JIT`."""
    if path in ("", "???"):
        return JIT
    stem = path.rsplit("/", 1)[-1]
    return stem.split(".", 1)[0] or stem


class Costs(NamedTuple):
    """Self costs, event by event (in the order of ``events``)."""

    events: list[str]
    by_object: dict[str, list[int]]
    by_function: dict[tuple[str, str], list[int]]  # (object label, function)


def _add(total: list[int], values: list[int], width: int) -> None:
    if len(total) < width:
        total.extend([0] * (width - len(total)))
    for i, value in enumerate(values):
        total[i] += value


def self_costs(path: Path) -> Costs:
    """Each shared object's and each function's self cost in a callgrind output file."""
    events: list[str] = []
    by_object: dict[str, list[int]] = defaultdict(list)
    by_function: dict[tuple[str, str], list[int]] = defaultdict(list)
    objects: dict[str, str] = {}
    functions: dict[str, str] = {}
    current, function = "", ""
    skip_next = False
    for raw in path.read_text(errors="replace").splitlines():
        if not raw or raw.startswith("#"):
            continue
        head = raw[0]
        if head.isdigit() or head in "+-*":
            if skip_next:
                skip_next = False
                continue
            values = [int(v) for v in raw.split()[1:]]
            if not events or not values:
                continue
            label = object_label(current)
            _add(by_object[label], values, len(events))
            _add(by_function[(label, function)], values, len(events))
            continue
        if raw.startswith("events:"):
            events = raw.split()[1:]
            continue
        key, _, value = raw.partition("=")
        if key == "ob":
            current = _name(value, objects)
        elif key == "fn":
            function = _name(value, functions)
        elif key == "cob":
            _name(value, objects)  # these define names that later lines reuse
        elif key == "cfn":
            _name(value, functions)
        elif key == "calls":
            skip_next = True
    return Costs(events, dict(by_object), dict(by_function))


def per_unit(costs: Costs, units: int) -> dict[str, Any]:
    """Each event's count per unit (a decision, a request), and for the headline events
    their split by shared object and the 25 costliest functions."""
    totals = [sum(v[i] for v in costs.by_object.values()) for i in range(len(costs.events))]
    out: dict[str, Any] = {
        "per_decision": {e: t / units for e, t in zip(costs.events, totals, strict=True)}
    }
    for event in HEADLINE:
        if event not in costs.events:
            continue
        at = costs.events.index(event)
        objects = sorted(costs.by_object.items(), key=lambda item: -item[1][at])
        functions: dict[str, int] = {}
        for (label, name), values in costs.by_function.items():
            key = f"{_LEVEL.sub('', name)} ({label})"
            functions[key] = functions.get(key, 0) + values[at]
        ranked = sorted(functions.items(), key=lambda item: -item[1])[:25]
        out[event] = {
            "by_object": {k: v[at] / units for k, v in objects if v[at] >= totals[at] / 1000},
            "top_functions": {name: value / units for name, value in ranked},
        }
    return out


def written(figures: dict[str, Any], kind: str) -> Path:
    """The figures as ``benchmarks/results/<time>-<kind>.json``."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{kind}.json"
    path.write_text(json.dumps(figures, indent=2))
    return path


def each_event(per_unit_counts: dict[str, float]) -> str:
    """``Ir 1,195,574, DLmr 2,899``: the counts of one unit, for a summary line."""
    return ", ".join(f"{event} {value:,.0f}" for event, value in per_unit_counts.items())


def switch() -> ctypes.CDLL:
    """Inside the counted program: ``instrument()`` starts valgrind's instrumentation
    (until then the program runs several times faster, uncounted), ``toggle()`` turns
    counting on or off."""
    return ctypes.CDLL(os.environ[SWITCH_ENV])


def counted_run(
    program: Sequence[str], caches: Sequence[str] = (), keep: Path | None = None
) -> Costs:
    """Run ``python program…`` under callgrind, instrumentation and counting off until the
    program switches them on, with ``caches`` (callgrind's cache options) if any; the
    output is copied to ``keep`` if given (for ``callgrind_annotate``)."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        source, library = folder / "switch.c", folder / "switch.so"
        source.write_text(_SWITCH_SOURCE)
        subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-o", library, source], check=True)
        output = folder / "callgrind.out"
        command = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            "--collect-atstart=no",
            f"--callgrind-out-file={output}",
            *caches,
            sys.executable,
            *program,
        ]
        env = {**os.environ, SWITCH_ENV: str(library), "PYTHONHASHSEED": "0"}
        subprocess.run(command, check=True, env=env, stderr=subprocess.DEVNULL)
        if keep is not None:
            shutil.copyfile(output, keep)
        return self_costs(output)
