"""What the load test reads off the machine about waiting for a CPU."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nba.load_measures import CpuWatch, runqueue_waits

# two processes that spin on one CPU: each is ready to run all the time, and runs about half
TWO_ON_ONE_CPU = """
import os, time
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
child = os.fork()
end = time.monotonic() + 30
while time.monotonic() < end:
    pass
if child:
    os.waitpid(child, 0)
"""

needs_schedstat = pytest.mark.skipif(
    not Path(f"/proc/{os.getpid()}/schedstat").exists(),
    reason="the kernel keeps no schedstat here",
)


@needs_schedstat
def test_processes_sharing_a_cpu_are_reported_as_waiting_for_it() -> None:
    pair = subprocess.Popen([sys.executable, "-c", TWO_ON_ONE_CPU])
    try:
        time.sleep(0.3)  # both spinning
        watch = CpuWatch(roots={"pair": pair.pid})
        watch.begin()
        time.sleep(1.5)
        report = watch.end()
    finally:
        pair.kill()
        pair.wait()
    waiting = report["waiting_for_a_cpu"]["per_process"]["pair"]
    # each spinner waits while the other runs: together about one CPU's worth of waiting
    assert waiting > 40.0, report
    assert report["per_process"]["pair"] < 110.0, report  # one CPU between them


@needs_schedstat
def test_every_thread_of_a_process_has_its_wait() -> None:
    waits = runqueue_waits(os.getpid())
    assert os.getpid() in waits  # the main thread's id is the process id
    assert all(w >= 0.0 for w in waits.values())


def test_a_process_that_is_gone_has_no_waits() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert runqueue_waits(gone.pid) == {}
