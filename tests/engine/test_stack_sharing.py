"""One data folder, one embedded stack: a second process on the same ``NBA_DATA_DIR``
(``nba serve`` and ``nba worker`` started apart) uses the first one's servers instead of
starting a second Redis on the same folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from engine.config import load_settings
from engine.embedded import EmbeddedStack, EmbeddedStackError
from engine.stack_lock import LOCK_NAME
from nba.startup import CommandStack

UNUSED_BROKER = "127.0.0.1:9"  # never contacted: a stack without topics does not talk to it
OWNER = """
import sys, time
from pathlib import Path
from engine.embedded import EmbeddedStack
stack = EmbeddedStack(Path(sys.argv[1]), kafka_brokers="127.0.0.1:9")
endpoints = stack.start()
print(endpoints.redis_url, flush=True)
time.sleep(120)
"""


def _ping(url: str) -> bool:
    return bool(redis.Redis.from_url(url, socket_timeout=5).ping())


@pytest.fixture
def owner(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Another process that started the folder's embedded Redis, and its address."""
    process = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    try:
        assert url.startswith("redis://"), url
        yield process, url
    finally:
        process.kill()
        process.wait()


def test_a_second_process_uses_the_running_stack_of_its_folder(
    owner: tuple[subprocess.Popen[str], str], tmp_path: Path
) -> None:
    process, url = owner
    second = EmbeddedStack(tmp_path, kafka_brokers=UNUSED_BROKER)
    with second as endpoints:
        assert endpoints.redis_url == url
        assert second.started_processes == []  # no second Redis on the same folder
        assert second.shared_with == process.pid
        assert _ping(endpoints.redis_url)
    assert _ping(url)  # leaving does not stop what the first process owns


def test_what_the_running_stack_lacks_is_one_line_naming_both_variables(
    owner: tuple[subprocess.Popen[str], str], tmp_path: Path
) -> None:
    process, url = owner
    with pytest.raises(EmbeddedStackError) as caught:
        EmbeddedStack(tmp_path).start()  # it needs a broker; the running stack has none
    message = str(caught.value)
    assert "NBA_REDIS_URL and NBA_KAFKA_BROKERS" in message
    assert f"process {process.pid}" in message and url in message
    assert "\n" not in message


def test_a_killed_owner_leaves_the_folder_free(
    owner: tuple[subprocess.Popen[str], str], tmp_path: Path
) -> None:
    process, url = owner
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    time.sleep(0.5)  # its Redis gets SIGTERM from the kernel (parent death) and stops
    assert (tmp_path / LOCK_NAME).exists()
    with EmbeddedStack(tmp_path, kafka_brokers=UNUSED_BROKER) as endpoints:
        assert endpoints.redis_url != url
        assert _ping(endpoints.redis_url)


def test_the_command_says_whose_servers_it_uses(
    owner: tuple[subprocess.Popen[str], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    process, url = owner
    monkeypatch.setenv("NBA_DATA_DIR", str(tmp_path.parent / "data"))
    monkeypatch.setenv("NBA_KAFKA_BROKERS", UNUSED_BROKER)
    settings = load_settings()
    with CommandStack(settings, EmbeddedStack(tmp_path, kafka_brokers=UNUSED_BROKER)) as endpoints:
        assert endpoints.redis_url == url
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert url in err and f"process {process.pid}" in err
