"""Counting instructions under callgrind (benchmarks/callgrind_costs.py, instructions.py,
api_instructions.py): the output's self costs read by shared object and function and
split per unit, a counted loop that counts the same each time and twice as much when it
runs twice as long, a comparison of two counts, and the API count's requests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from benchmarks import callgrind_costs as costs_module
from benchmarks.callgrind_costs import JIT, counted_run, object_label, self_costs

# compressed names, a call whose inclusive cost must not count as the caller's own, and
# relative positions; two events
OUTPUT = """# callgrind format
version: 1
positions: line
events: Ir DLmr
summary: 1234 9

ob=(1) /usr/lib/libpython3.11.so.1.0
fl=(1) ceval.c
fn=(1) _PyEval_EvalFrameDefault
16 100 2
+2 50 1
cob=(2) /venv/numpy/_core/_multiarray_umath.cpython-311-x86_64-linux-gnu.so
cfi=(2) ???
cfn=(2) PyArray_Pack
calls=3 0
* 1000 5
-1 4 0

ob=(2)
fl=(2)
fn=(2)
0 1000 5

ob=(3) ???
fl=(2)
fn=(3) 0x0000000056805000
0 80 1
fn=(1)
0 0 0
"""


def test_self_costs_skip_the_calls_inclusive_line_and_follow_compressed_names(
    tmp_path: Path,
) -> None:
    path = tmp_path / "callgrind.out"
    path.write_text(OUTPUT)
    costs = self_costs(path)
    assert costs.events == ["Ir", "DLmr"]
    assert costs.by_object == {
        "libpython3": [154, 3],
        "_multiarray_umath": [1000, 5],
        JIT: [80, 1],
    }
    assert costs.by_function[("libpython3", "_PyEval_EvalFrameDefault")] == [154, 3]
    assert costs.by_function[("_multiarray_umath", "PyArray_Pack")] == [1000, 5]
    assert costs.by_function[(JIT, "0x0000000056805000")] == [80, 1]
    assert costs.by_function[(JIT, "_PyEval_EvalFrameDefault")] == [0, 0]


def test_object_labels_are_short() -> None:
    assert object_label("/root/.pyenv/versions/3.11.7/lib/libpython3.11.so.1.0") == "libpython3"
    assert object_label("/x/orjson/orjson.cpython-311-x86_64-linux-gnu.so") == "orjson"
    assert object_label("???") == JIT


LOOP = """import sys
from callgrind_costs import switch

counting = switch()
counting.instrument()
total = 0
for _ in range(3):  # the interpreter specialises its code on the first passes
    total += sum(i * i for i in range(1000))
counting.toggle()
for _ in range(int(sys.argv[1])):
    total += sum(i * i for i in range(1000))
counting.toggle()
"""


@pytest.mark.slow
@pytest.mark.skipif(
    not (shutil.which("valgrind") and shutil.which("gcc"))
    or not Path("/usr/include/valgrind/callgrind.h").exists(),
    reason="needs valgrind and gcc with valgrind's headers (Debian: valgrind, gcc)",
)
def test_only_the_switched_part_is_counted_and_counts_the_same_each_time(
    tmp_path: Path,
) -> None:
    script = tmp_path / "counted_loop.py"  # beside a copy of the module, as a script
    script.write_text(LOOP)
    shutil.copy(Path(costs_module.__file__), tmp_path / "callgrind_costs.py")

    def instructions(loops: int) -> int:
        costs = counted_run([str(script), str(loops)])
        return sum(values[0] for values in costs.by_object.values())

    ten, again, twenty = instructions(10), instructions(10), instructions(20)
    assert abs(again - ten) <= ten * 0.001
    assert 1.95 <= twenty / ten <= 2.05
    assert ten > 10 * 1000 * 20  # a thousand squares a loop, a few dozen instructions each


def test_a_comparison_gives_each_events_ratio_and_the_largest_changes_first() -> None:
    from benchmarks.instructions import compared

    old = {
        "per_decision": {"Ir": 1000.0, "DLmr": 10.0},
        "Ir": {"by_object": {"libpython3": 700.0, "orjson": 300.0}},
    }
    new = {
        "per_decision": {"Ir": 900.0, "DLmr": 12.0},
        "Ir": {"by_object": {"libpython3": 690.0, "orjson": 200.0, "libm": 10.0}},
    }
    assert compared(old, new) == [
        "Ir: 1,000 -> 900 (0.9000)",
        "DLmr: 10 -> 12 (1.2000)",
        "  orjson: -100 instructions a decision",
        "  libpython3: -10 instructions a decision",
        "  libm: +10 instructions a decision",
    ]


def test_per_unit_splits_the_headline_events_and_ranks_functions(tmp_path: Path) -> None:
    from benchmarks.callgrind_costs import per_unit

    path = tmp_path / "callgrind.out"
    path.write_text(OUTPUT)
    figures = per_unit(self_costs(path), 2)
    assert figures["per_decision"] == {"Ir": 617.0, "DLmr": 4.5}
    assert figures["Ir"]["by_object"] == {"_multiarray_umath": 500.0, "libpython3": 77.0, JIT: 40.0}
    assert next(iter(figures["Ir"]["top_functions"])) == "PyArray_Pack (_multiarray_umath)"
    assert figures["DLmr"]["by_object"]["libpython3"] == 1.5


def test_the_api_count_sends_the_demo_worlds_web_requests_only() -> None:
    from benchmarks.api_instructions import web_requests

    bodies = web_requests(30, customers=50)
    assert len(bodies) == 30
    assert {body["channel"] for body in bodies} == {"web"}
    assert all(body["customer_id"] and "placement" in body for body in bodies)
    assert bodies == web_requests(30, customers=50)  # the same each run
