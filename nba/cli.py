"""The ``nba`` command line (contract §6).

A user's mistake, or a service that cannot be reached, ends a command with one line on
stderr, ``nba <command>: <what is wrong>``, naming the variable or argument behind it, and
a non-zero exit: 2 for bad input (arguments, configuration, files), 1 when a server cannot
be reached or started. Never a traceback. What a command checks and starts before its
work is in :mod:`nba.startup`; the argument types are in :mod:`nba.arguments`, the model
and catalogue commands in :mod:`nba.model_commands`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any

from nba.arguments import above_zero, caller_rate, folder, whole
from nba.demo import DEMO_CALLERS
from nba.model_commands import (
    cmd_evaluate,
    cmd_models,
    cmd_rules_check,
    cmd_seed,
    cmd_train,
)
from nba.startup import (
    CommandError,
    check_listen,
    compiled_catalogue,
    redis_errors,
    redis_unreachable,
    settings_or_exit,
    stack_for,
)

log = logging.getLogger("nba")


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from engine.affinity import cpus_of, pin_process
    from engine.http_protocol import LeanHttpProtocol
    from nba.wiring import build_app

    settings = settings_or_exit()
    host, port = args.host or settings.host, args.port or settings.port
    check_listen(
        host, port, "--host" if args.host else "NBA_HOST", "--port" if args.port else "NBA_PORT"
    )
    catalogue = compiled_catalogue(settings)
    pin_process(cpus_of(settings.api_cpus))  # its worker processes inherit it
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "loop": "uvloop",
        "http": LeanHttpProtocol if settings.http_protocol == "lean" else "httptools",
        "log_level": "warning",
        "access_log": False,
        # connections and requests still open at a stop get this long, then are dropped
        "timeout_graceful_shutdown": 5,
    }
    with stack_for(settings) as endpoints:
        if args.workers <= 1:
            app = build_app(settings, endpoints.redis_url, endpoints.kafka_brokers, catalogue)
            uvicorn.run(app, **options)  # type: ignore[arg-type]
            return 0
        # Several processes share the port; each builds its own app from the environment
        # (the same servers, one metrics folder they all write to).
        from engine.config import resolve_api_keys

        resolve_api_keys(settings)  # a generated key is made once, before the workers start
        metrics_dir = settings.data_dir / "metrics" / str(os.getpid())
        metrics_dir.mkdir(parents=True, exist_ok=True)
        os.environ.update(
            NBA_REDIS_URL=endpoints.redis_url,
            NBA_KAFKA_BROKERS=endpoints.kafka_brokers,
            PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        )
        uvicorn.run(
            "nba.wiring:app_from_environment", factory=True, workers=args.workers, **options
        )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from feature_store.impact_store import RedisImpactStore
    from feature_store.redis_store import RedisFeatureStore
    from streams.transport import QuietWorker
    from streams.worker import create_worker_app

    settings = settings_or_exit()
    with stack_for(settings) as endpoints:
        from engine.affinity import cpus_of, pin_process
        from engine.priority import lower_priority

        lower_priority(settings.background_nice)  # after the stack: Redis keeps ours
        pin_process(cpus_of(settings.background_cpus))
        app = create_worker_app(
            settings,
            endpoints.kafka_brokers,
            lambda: RedisFeatureStore.from_url(endpoints.redis_url),
            lambda: RedisImpactStore.from_url(endpoints.redis_url),
            publish=publisher(endpoints.redis_url),
            learner_factory=adaptive_learner(endpoints.redis_url, settings.learn_negative_share),
        )
        from models.adaptive_kernels import warm_up
        from streams.collection import FULL_EVERY_S, TimedCollections

        warm_up()  # the adaptive learner's compiled kernels, before any event waits
        garbage = TimedCollections()
        garbage.take_over()

        @app.timer(FULL_EVERY_S)  # type: ignore[untyped-decorator]
        async def collect_garbage() -> None:
            garbage.collect()

        # uvloop, as in the API: the worker's event loop and its consumer thread's loop
        # turn over once per batch of events, and asyncio's own loop cost more per turn
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        worker = QuietWorker(app, loglevel=settings.worker_loglevel, quiet=True)
        try:
            worker.execute_from_commandline()
        except SystemExit as exit_:
            return int(exit_.code or 0)
    return 0


def publisher(redis_url: str) -> Any:
    """The worker publishes its figures to Redis, made in the worker's own event loop."""
    from feature_store.ops_store import RedisOpsStore

    state: dict[str, RedisOpsStore] = {}

    async def publish(worker: str, fields: dict[str, float]) -> None:
        if "ops" not in state:
            state["ops"] = RedisOpsStore.from_url(redis_url)
        await state["ops"].publish(worker, fields)

    return publish


def adaptive_learner(redis_url: str, negative_share: float = 1.0) -> Any:
    """The worker's learner, resumed from the stored snapshot and the deltas after it."""

    async def make() -> Any:
        from feature_store.adaptive_store import RedisAdaptiveStore
        from nba.adaptive import restore
        from streams.learner import Learner

        store = RedisAdaptiveStore.from_url(redis_url)
        model, cursor = await restore(store)
        learner = Learner(model, store.append, store.save_snapshot, negative_share=negative_share)
        learner.cursor = cursor
        return learner

    return make


def cmd_email_run(args: argparse.Namespace) -> int:
    from engine.config import resolve_api_keys
    from nba.email_run import run_email

    settings = settings_or_exit()
    keys, _ = resolve_api_keys(settings)
    key = args.api_key or next(
        (k for k, scopes in keys.items() if "decide" in scopes or "admin" in scopes), None
    )
    if key is None:
        print("nba email-run: no API key with the decide scope", file=sys.stderr)
        return 2
    base_url = args.url or f"http://{settings.host}:{settings.port}"
    return run_email(
        Path(args.customers), Path(args.out), base_url, key, args.placement, args.limit
    )


def cmd_report_uplift(args: argparse.Namespace) -> int:
    from engine.errors import StoredDataError
    from feature_store.impact_store import RedisImpactStore
    from nba.report import run_report_uplift
    from nba.wiring import arm_counts

    settings = settings_or_exit()
    catalogue = compiled_catalogue(settings)
    with stack_for(settings) as endpoints:

        async def cells() -> list[Any]:
            impact = RedisImpactStore.from_url(endpoints.redis_url)
            try:
                return await impact.cells()
            finally:
                await impact.close()

        try:
            found = asyncio.run(cells())
        except StoredDataError as exc:
            print(f"nba report uplift: {exc}", file=sys.stderr)
            return 2
        except redis_errors() as exc:
            raise redis_unreachable(settings, endpoints.redis_url, exc) from None
    counts = arm_counts(found, catalogue)
    return run_report_uplift(counts, Path(args.out))


def cmd_demo(args: argparse.Namespace) -> int:
    from nba.demo.runner import run_demo

    settings = settings_or_exit()
    check_listen(settings.host, settings.port, "NBA_HOST", "NBA_PORT")  # where it serves
    compiled_catalogue(settings)
    return run_demo(settings, args.duration, args.customers, args.concurrency)


def cmd_loadtest(args: argparse.Namespace) -> int:
    from nba.loadtest import run_loadtest

    settings = settings_or_exit()
    if args.url is None:  # it starts the API on the catalogue
        compiled_catalogue(settings)
    return run_loadtest(
        args.rate,
        args.duration,
        args.workers,
        Path(args.out),
        url=args.url,
        settings=settings,
        caller_rates=dict(args.caller),
    )


def _commands(
    parser: argparse.ArgumentParser, dest: str
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """``parser``'s subcommands. Without one, the usage and a line naming them (argparse
    would name ``dest``, an internal name)."""
    sub = parser.add_subparsers(dest=dest, metavar="COMMAND", title="commands")

    def missing(args: argparse.Namespace) -> int:
        parser.error(f"a command is required: one of {', '.join(sub.choices)}")

    parser.set_defaults(func=missing)
    return sub


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="nba", description="Real-time next-best-action engine.")
    sub = _commands(root, "command")

    demo = sub.add_parser("demo", help="start everything on embedded defaults and drive traffic")
    demo.add_argument(
        "--duration", type=above_zero, default=30.0, help="seconds of traffic (default 30)"
    )
    demo.add_argument(
        "--customers", type=whole(1), default=3000, help="customers in the demo world"
    )
    demo.add_argument(
        "--concurrency",
        type=whole(1),
        default=DEMO_CALLERS,
        help=f"simultaneous simulated callers (default {DEMO_CALLERS})",
    )
    demo.set_defaults(func=cmd_demo)

    serve = sub.add_parser("serve", help="serve the HTTP API")
    serve.add_argument("--host", default=None, help="bind address (default NBA_HOST)")
    serve.add_argument("--port", type=whole(1, 65535), default=None, help="port (default NBA_PORT)")
    serve.add_argument(
        "--workers", type=whole(1), default=1, help="API processes sharing the port (default 1)"
    )
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="run the stream worker (crm, clickstream, responses)")
    worker.set_defaults(func=cmd_worker)

    seed = sub.add_parser("seed", help="load the demo world into the store; train if no model")
    seed.add_argument(
        "--customers", type=whole(1), default=3000, help="customers in the demo world (3000)"
    )
    seed.add_argument("--retrain", action="store_true", help="train a new model even if one exists")
    seed.set_defaults(func=cmd_seed)

    train = sub.add_parser("train", help="train, export to ONNX and register a model")
    train.add_argument("--log", default=None, help="logged-decision file (JSON Lines, contract §6)")
    train.add_argument(
        "--out", type=folder, default=None, help="registry folder (default NBA_MODEL_DIR)"
    )
    train.add_argument(
        "--from-stream",
        action="store_true",
        help="learn from the engine's own decision log joined with the responses (Kafka)",
    )
    train.add_argument(
        "--write-log", default=None, help="with --from-stream: also write it as a log file"
    )
    train.set_defaults(func=cmd_train)

    rules = sub.add_parser("rules", help="catalogue and rule tools")
    rules_sub = _commands(rules, "rules_command")
    check = rules_sub.add_parser("check", help="validate a catalogue folder; every problem at once")
    check.add_argument("folder", nargs="?", default=None, help="folder (default NBA_CATALOGUE)")
    check.set_defaults(func=cmd_rules_check)

    evaluate = sub.add_parser(
        "evaluate", help="off-policy estimates (IPS, SNIPS, DR) of policies on a logged file"
    )
    evaluate.add_argument("--log", required=True, help="logged-decision file (JSON Lines)")
    evaluate.add_argument(
        "--policy",
        action="append",
        default=[],
        help="uniform | logged | model:DIR (repeatable; default: logged)",
    )
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of a table")
    evaluate.set_defaults(func=cmd_evaluate)

    email = sub.add_parser(
        "email-run", help="decide the email content for a list of recipients at send time"
    )
    email.add_argument("--customers", required=True, help="one id (or JSON object) per line")
    email.add_argument("--out", required=True, help="JSON Lines output, one decision per line")
    email.add_argument("--placement", default=None, help="email placement (channel default)")
    email.add_argument(
        "--limit", type=whole(1, 20), default=1, help="actions per recipient, 1 to 20"
    )
    email.add_argument("--url", default=None, help="API base URL (default NBA_HOST:NBA_PORT)")
    email.add_argument("--api-key", default=None, help="API key (default: a configured key)")
    email.set_defaults(func=cmd_email_run)

    models = sub.add_parser("models", help="the model registry")
    models.add_argument(
        "--dir", type=folder, default=None, help="registry folder (default NBA_MODEL_DIR)"
    )
    models_sub = _commands(models, "models_command")
    listing = models_sub.add_parser(
        "list", help="registered models, the current one and the challenger"
    )
    promote = models_sub.add_parser("promote", help="serve this version (live within a second)")
    promote.add_argument("version")
    rollback = models_sub.add_parser("rollback", help="serve the version that was current before")
    challenge = models_sub.add_parser(
        "challenge", help="score this version in shadow ('none' stops)"
    )
    challenge.add_argument("version")
    for command in (listing, promote, rollback, challenge):
        command.set_defaults(func=cmd_models)

    report = sub.add_parser("report", help="reports")
    report_sub = _commands(report, "report_command")
    uplift = report_sub.add_parser(
        "uplift", help="uplift of every action against its control group: JSON, PNG and HTML"
    )
    uplift.add_argument(
        "--out", type=folder, required=True, help="folder for uplift.json/.png/.html"
    )
    uplift.set_defaults(func=cmd_report_uplift)

    loadtest = sub.add_parser(
        "loadtest", help="drive the API with Locust at a fixed offered rate; results and a plot"
    )
    loadtest.add_argument("--rate", type=above_zero, default=200.0, help="web decisions/s offered")
    loadtest.add_argument(
        "--duration", type=above_zero, default=60.0, help="seconds of measured load"
    )
    loadtest.add_argument("--workers", type=whole(1), default=2, help="API processes to start")
    loadtest.add_argument(
        "--url", default=None, help="an API already running (else one is started)"
    )
    loadtest.add_argument("--out", type=folder, default="benchmarks/results", help="results folder")
    loadtest.add_argument(
        "--caller",
        type=caller_rate,
        action="append",
        default=[],
        metavar="CALLER=RATE",
        help="arrivals/s of another caller (desk, email, responses) instead of its share of "
        "the web rate; 0 leaves it out (repeatable)",
    )
    loadtest.set_defaults(func=cmd_loadtest)
    return root


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except CommandError as exc:
        print(f"{_prog(args)}: {exc}", file=sys.stderr)
        return exc.code


def _prog(args: argparse.Namespace) -> str:
    """``nba serve``, ``nba rules check``: the command that ran."""
    words = ["nba", args.command]
    sub = getattr(args, f"{args.command}_command", None)
    return " ".join([*words, sub] if sub else words)


if __name__ == "__main__":
    raise SystemExit(main())
