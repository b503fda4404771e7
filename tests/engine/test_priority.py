"""Background processes give way to the API (engine.priority): the stream worker's and
the embedded broker's nice values, and the broker's session group, against Redis's; and
each keeps to its CPUs where they are set (engine.affinity)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis as redis_client

from engine.embedded import EmbeddedStack
from engine.priority import AUTOGROUP

HAS_AUTOGROUP = AUTOGROUP.exists()


def _nice_of(pid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, pid)


def _child_nice(increment: int, *, own_session: bool) -> tuple[int, str]:
    code = (
        "import os, pathlib; from engine.priority import lower_priority; "
        f"lower_priority({increment}); "
        "group = pathlib.Path('/proc/self/autogroup'); "
        "print(os.nice(0)); print(group.read_text().strip() if group.exists() else '')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        start_new_session=own_session,
        cwd=Path(__file__).resolve().parents[2],
    ).stdout.splitlines()
    return int(out[0]), out[1] if len(out) > 1 else ""


@pytest.mark.parametrize("increment", [0, 3, 10])
def test_a_process_lowers_its_priority_by_the_increment(increment: int) -> None:
    ours = os.nice(0)
    nice, _ = _child_nice(increment, own_session=False)
    assert nice == min(19, ours + increment)


@pytest.mark.skipif(not HAS_AUTOGROUP, reason="this kernel has no session autogroups")
def test_a_session_leader_lowers_its_group_and_no_one_else_does() -> None:
    ours = AUTOGROUP.read_text()
    _, group = _child_nice(7, own_session=True)
    assert group.endswith("nice 7")
    _, shared = _child_nice(7, own_session=False)  # in our session: our group untouched
    assert shared == ours.strip() == AUTOGROUP.read_text().strip()


def test_the_embedded_broker_runs_below_redis(tmp_path: Path) -> None:
    ours = os.nice(0)
    stack = EmbeddedStack(tmp_path, broker_nice=6)
    with stack:
        redis, broker = stack.started_processes
        assert _nice_of(redis.pid) == ours
        assert _nice_of(broker.pid) == min(19, ours + 6)
        if HAS_AUTOGROUP:
            group = Path(f"/proc/{broker.pid}/autogroup").read_text().strip()
            assert group.endswith("nice 6")
            assert Path(f"/proc/{redis.pid}/autogroup").read_text().strip().endswith("nice 0")


def _cpus_of_every_thread(pid: int) -> set[frozenset[int]]:
    return {frozenset(os.sched_getaffinity(int(task))) for task in os.listdir(f"/proc/{pid}/task")}


def test_the_embedded_redis_and_broker_keep_to_their_cpus(tmp_path: Path) -> None:
    """engine.affinity: Redis's server thread on the API's CPUs, its background threads
    (fsync, lazy freeing, the AOF rewrite) and the broker on the background's."""
    mine = sorted(os.sched_getaffinity(0))
    first, last = frozenset(mine[:1]), frozenset(mine[-1:])
    stack = EmbeddedStack(tmp_path, redis_cpus=first, background_cpus=last)
    with stack as endpoints:
        redis, broker = stack.started_processes
        threads = {
            Path(f"/proc/{redis.pid}/task/{task}/comm").read_text().strip(): frozenset(
                os.sched_getaffinity(int(task))
            )
            for task in os.listdir(f"/proc/{redis.pid}/task")
        }
        assert threads["redis-server"] == first
        assert threads["bio_aof_fsync"] == last
        client = redis_client.Redis.from_url(endpoints.redis_url)
        try:
            assert client.config_get("aof_rewrite_cpulist") == {
                "aof_rewrite_cpulist": str(mine[-1])
            }
        finally:
            client.close()
        assert _cpus_of_every_thread(broker.pid) == {last}
    assert os.sched_getaffinity(0) == set(mine)  # ours untouched


def test_a_spawned_command_keeps_to_its_cpus(tmp_path: Path) -> None:
    """nba.processes.spawn (the load test's Locust): the child runs on the CPUs given."""
    from nba.processes import child_env, spawn

    last = max(os.sched_getaffinity(0))
    log = tmp_path / "child.log"
    child = spawn(
        [sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"],
        child_env(),
        log,
        frozenset([last]),
    )
    assert child.wait(30) == 0
    assert log.read_text().strip() == f"[{last}]"
