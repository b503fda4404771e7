"""The stream worker's full collections come from its timer, never from allocation counts.

Each case runs in a fresh interpreter: the policy is the whole process's, and the test
runner's own collector must not inherit it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.conftest import ROOT

CHURN = """
import gc
from streams.collection import TimedCollections

full = []


def count(phase, info):
    if phase == "start" and info["generation"] == 2:
        full.append(1)


gc.callbacks.append(count)
garbage = TimedCollections()
if TAKE_OVER:
    garbage.take_over()
kept = []
for i in range(400_000):  # a window that grows and turns over, as the learner's does
    kept.append({"i": i, "view": [i]})
    if len(kept) > 100_000:
        del kept[:50_000]
print(len(full))
"""


def run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_without_the_take_over_churn_starts_full_collections() -> None:
    assert int(run("TAKE_OVER = False\n" + CHURN)) > 0  # the case the module is for


def test_after_the_take_over_churn_starts_no_full_collection() -> None:
    assert run("TAKE_OVER = True\n" + CHURN) == "0"


def test_the_timed_collection_frees_cycles_and_freezes_the_survivors_once() -> None:
    found = run(
        """
        import gc
        import weakref
        from streams.collection import TimedCollections

        garbage = TimedCollections()
        garbage.take_over()

        class Node:
            pass

        a, b = Node(), Node()  # a cycle: reference counts never free it
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b
        survivor = [[1], [2]]
        before = gc.get_freeze_count()
        print(gone() is not None, garbage.collect() > 0, gone() is None)
        print(gc.get_freeze_count() > before, garbage.frozen)
        frozen = gc.get_freeze_count()
        late = [[3]]
        garbage.collect()
        print(gc.get_freeze_count() == frozen)
        """
    )
    assert found.splitlines() == ["True True True", "True True", "True"]
