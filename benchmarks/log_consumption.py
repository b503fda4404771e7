"""CPU to consume the decision log, no work per record: a faust agent against the worker's
bulk reader (``streams.log_reader``), each in a process of its own, for the stream
benchmark (``test_bench_streams.py``).

``python -m benchmarks.log_consumption faust|bulk BROKERS TOPIC COUNT DATA_DIR`` reads
COUNT records from the start of TOPIC in a new consumer group and writes
``DATA_DIR/result.json``: the process's CPU seconds and the wall seconds from the first
records handed over to the last, and how many records came after those first (the ones
the figures cover; faust's worker turns standard output into log lines, hence a file).
"""

from __future__ import annotations

import asyncio
import os
import resource
import sys
import time
import uuid
from typing import Any

import orjson


def cpu_s() -> float:
    used = resource.getrusage(resource.RUSAGE_SELF)  # every thread of the process
    return used.ru_utime + used.ru_stime


def report(data_dir: str, counted: int, first: tuple[float, float]) -> None:
    wall_s, used_s = time.perf_counter() - first[0], cpu_s() - first[1]
    figures = {"records": counted, "cpu_s": used_s, "wall_s": wall_s}
    os.makedirs(data_dir, exist_ok=True)
    with open(os.path.join(data_dir, "result.json"), "wb") as out:
        out.write(orjson.dumps(figures))


async def bulk(brokers: str, topic: str, count: int, data_dir: str) -> None:
    from streams.log_reader import DecisionLogReader

    seen: dict[str, Any] = {"n": 0}
    done = asyncio.Event()

    async def handle(records: list[Any]) -> int:
        if "first" not in seen:  # the figures cover the batches after the first
            seen["first"], seen["before"] = (time.perf_counter(), cpu_s()), len(records)
        seen["n"] += len(records)
        if seen["n"] >= count:
            done.set()
        return len(records)

    async def dead_letter(key: bytes | None, raw: Any, reason: str) -> None: ...

    reader = DecisionLogReader(
        brokers, topic, f"lc-{uuid.uuid4().hex[:8]}", lambda raw: (raw, None), handle, dead_letter
    )
    task = asyncio.create_task(reader.run())
    await done.wait()
    report(data_dir, seen["n"] - seen["before"], seen["first"])
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def faust_agent(brokers: str, topic: str, count: int, data_dir: str) -> None:
    from streams.transport import QuietWorker, WorkerApp

    app = WorkerApp(
        f"lc-{uuid.uuid4().hex[:8]}",
        datadir=data_dir,
        broker=f"kafka://{brokers}",
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",
        web_enabled=False,
        broker_rebalance_timeout=3.0,
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        consumer_auto_offset_reset="earliest",
    )
    source = app.topic(topic, value_serializer="raw", key_serializer="raw")
    seen: dict[str, Any] = {"n": 0}

    @app.agent(source)
    async def read(stream: Any) -> None:  # as the worker's agents read: acked by hand
        events = stream.noack()
        async for event in events.events():
            seen.setdefault("first", (time.perf_counter(), cpu_s()))
            seen["n"] += 1
            await events.ack(event)
            if seen["n"] >= count:
                report(data_dir, seen["n"] - 1, seen["first"])
                os._exit(0)  # faust's worker has no call to stop from inside an agent

    QuietWorker(app, loglevel="WARNING").execute_from_commandline()


def main(argv: list[str]) -> int:
    mode, brokers, topic, count, data_dir = argv
    if mode == "bulk":
        asyncio.run(bulk(brokers, topic, int(count), data_dir))
    else:
        faust_agent(brokers, topic, int(count), data_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
