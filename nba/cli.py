"""The ``nba`` command line (contract §6)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any

from engine.config import ConfigError, Settings, load_settings

log = logging.getLogger("nba")


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        print(f"nba: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _stack(settings: Settings) -> Any:
    """The embedded servers where none is configured: Redis with the API's priority and
    CPUs (a decision waits on it) but its own background work on the background's, and
    the broker with the background's."""
    from engine.affinity import cpus_of
    from engine.embedded import EmbeddedStack
    from nba.wiring import topic_names

    return EmbeddedStack(
        settings.data_dir / "embedded",
        redis_url=settings.redis_url,
        kafka_brokers=settings.kafka_brokers,
        topics=topic_names(settings),
        broker_nice=settings.background_nice,
        redis_cpus=cpus_of(settings.api_cpus),
        background_cpus=cpus_of(settings.background_cpus),
    )


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from engine.affinity import cpus_of, pin_process
    from engine.http_protocol import LeanHttpProtocol
    from nba.wiring import build_app

    settings = _settings()
    pin_process(cpus_of(settings.api_cpus))  # its worker processes inherit it
    options: dict[str, Any] = {
        "host": args.host or settings.host,
        "port": args.port or settings.port,
        "loop": "uvloop",
        "http": LeanHttpProtocol if settings.http_protocol == "lean" else "httptools",
        "log_level": "warning",
        "access_log": False,
        # connections and requests still open at a stop get this long, then are dropped
        "timeout_graceful_shutdown": 5,
    }
    with _stack(settings) as endpoints:
        if args.workers <= 1:
            app = build_app(settings, endpoints.redis_url, endpoints.kafka_brokers)
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

    settings = _settings()
    with _stack(settings) as endpoints:
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

        warm_up()  # the adaptive learner's compiled kernels, before any event waits
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


def cmd_seed(args: argparse.Namespace) -> int:
    """Demo data straight into the store (no broker needed), then a first model."""
    from feature_store.redis_store import RedisFeatureStore
    from models.registry import ModelRegistry
    from nba.demo.seed import seed_directly, train_demo_model
    from nba.demo.world import DemoWorld
    from rules.catalogue import load_catalogue

    settings = _settings()
    world = DemoWorld(args.customers)
    with _stack(settings) as endpoints:

        async def run() -> int:
            store = RedisFeatureStore.from_url(endpoints.redis_url)
            try:
                return await seed_directly(world, store)
            finally:
                await store.close()

        applied = asyncio.run(run())
        print(f"seeded {len(world.customers)} customers ({applied} events applied)")
    registry = ModelRegistry(settings.model_dir)
    if registry.current() is None or args.retrain:
        version, meta = train_demo_model(world, load_catalogue(settings.catalogue), registry)
        print(f"trained {meta['estimator']} model {version}: {_metrics_line(meta)}")
    return 0


def _metrics_line(meta: dict[str, Any]) -> str:
    best = meta["metrics"][meta["estimator"]]
    return f"hold-out log loss {best['log_loss']:.4f}, AUC {best['auc']:.3f}"


def cmd_train(args: argparse.Namespace) -> int:
    from models.logfile import read_log
    from models.registry import ModelRegistry
    from models.training import train_model
    from rules.catalogue import load_catalogue

    settings = _settings()
    registry = ModelRegistry(Path(args.out) if args.out else settings.model_dir)
    catalogue = load_catalogue(settings.catalogue)
    views = {a.action.id: a.view for a in catalogue.actions}
    if args.from_stream:
        from nba.stream_log import read_history, training_set, write_log

        with _stack(settings) as endpoints:
            rows = read_history(endpoints.kafka_brokers, settings.topic_prefix)
        print(
            f"{len(rows)} shown actions in the decision log, "
            f"{sum(r['reward'] > 0 for r in rows)} with a positive response"
        )
        if args.write_log:
            write_log(rows, Path(args.write_log))
            print(f"logged-decision file written to {args.write_log}")
        version, meta = train_model(training_set(rows, views), registry, source="decision log")
    elif args.log is None:
        from nba.demo.seed import train_demo_model
        from nba.demo.world import DemoWorld

        version, meta = train_demo_model(DemoWorld(), catalogue, registry)
    else:
        data = read_log(Path(args.log), views)
        version, meta = train_model(data, registry, source=str(args.log))
    print(
        f"registered {meta['estimator']} model {version} in {registry.root}: {_metrics_line(meta)}"
    )
    return 0


def cmd_rules_check(args: argparse.Namespace) -> int:
    from engine.errors import CatalogueError
    from rules.catalogue import load_catalogue

    folder = Path(args.folder) if args.folder else _settings().catalogue
    try:
        catalogue = load_catalogue(folder)
    except CatalogueError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{len(exc.problems)} problem(s); catalogue refused", file=sys.stderr)
        return 1
    print(
        f"{folder}: {len(catalogue.actions)} actions, {len(catalogue.rules)} rules, "
        f"channels {sorted(catalogue.channel_names())}, version {catalogue.version}"
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from nba.evaluate import run_evaluate

    settings = _settings()
    return run_evaluate(Path(args.log), args.policy or ["logged"], args.json, settings.catalogue)


def cmd_email_run(args: argparse.Namespace) -> int:
    from engine.config import resolve_api_keys
    from nba.email_run import run_email

    settings = _settings()
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
    from feature_store.impact_store import RedisImpactStore
    from nba.report import run_report_uplift
    from nba.wiring import arm_counts
    from rules.catalogue import load_catalogue

    settings = _settings()
    with _stack(settings) as endpoints:

        async def cells() -> list[Any]:
            impact = RedisImpactStore.from_url(endpoints.redis_url)
            try:
                return await impact.cells()
            finally:
                await impact.close()

        found = asyncio.run(cells())
    counts = arm_counts(found, load_catalogue(settings.catalogue))
    return run_report_uplift(counts, Path(args.out))


def cmd_models(args: argparse.Namespace) -> int:
    from models.registry import ModelRegistry

    registry = ModelRegistry(Path(args.dir) if args.dir else _settings().model_dir)
    try:
        if args.models_command == "list":
            current, challenger = registry.current(), registry.challenger()
            for version in registry.versions():
                meta = registry.metadata(version)
                best = meta.get("metrics", {}).get(meta.get("estimator", ""), {})
                mark = "*" if version == current else "s" if version == challenger else " "
                print(
                    f"{mark} {version}  {meta.get('estimator', '?'):<9} "
                    f"log loss {best.get('log_loss', float('nan')):.4f}  "
                    f"AUC {best.get('auc', float('nan')):.3f}  rows {meta.get('rows', '?')}"
                )
            print("(* current, s challenger in shadow)")
        elif args.models_command == "promote":
            registry.promote(args.version)
            print(f"promoted {args.version}")
        elif args.models_command == "rollback":
            print(f"rolled back to {registry.rollback()}")
        elif args.models_command == "challenge":
            registry.set_challenger(None if args.version == "none" else args.version)
            print(f"challenger: {args.version}")
    except (FileNotFoundError, LookupError) as exc:
        print(f"nba models: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from nba.demo.runner import run_demo

    return run_demo(_settings(), args.duration, args.customers, args.concurrency)


def cmd_loadtest(args: argparse.Namespace) -> int:
    from nba.loadtest import run_loadtest

    settings = _settings()
    return run_loadtest(
        args.rate,
        args.duration,
        args.workers,
        Path(args.out),
        url=args.url,
        settings=settings,
        caller_rates=dict(args.caller),
    )


def _caller_rate(text: str) -> tuple[str, float]:
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
    if not sep or value < 0:
        raise argparse.ArgumentTypeError(f"expected CALLER=RATE with RATE >= 0, got {text!r}")
    return kind, value


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="nba", description="Real-time next-best-action engine.")
    sub = root.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="start everything on embedded defaults and drive traffic")
    demo.add_argument(
        "--duration", type=float, default=30.0, help="seconds of traffic (default 30)"
    )
    demo.add_argument("--customers", type=int, default=3000, help="customers in the demo world")
    demo.add_argument("--concurrency", type=int, default=8, help="simultaneous simulated callers")
    demo.set_defaults(func=cmd_demo)

    serve = sub.add_parser("serve", help="serve the HTTP API")
    serve.add_argument("--host", default=None, help="bind address (default NBA_HOST)")
    serve.add_argument("--port", type=int, default=None, help="port (default NBA_PORT)")
    serve.add_argument(
        "--workers", type=int, default=1, help="API processes sharing the port (default 1)"
    )
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="run the stream worker (crm, clickstream, responses)")
    worker.set_defaults(func=cmd_worker)

    seed = sub.add_parser("seed", help="load the demo world into the store; train if no model")
    seed.add_argument("--customers", type=int, default=3000)
    seed.add_argument("--retrain", action="store_true", help="train a new model even if one exists")
    seed.set_defaults(func=cmd_seed)

    train = sub.add_parser("train", help="train, export to ONNX and register a model")
    train.add_argument("--log", default=None, help="logged-decision file (JSON Lines, contract §6)")
    train.add_argument("--out", default=None, help="registry folder (default NBA_MODEL_DIR)")
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
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)
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
    email.add_argument("--limit", type=int, default=1, help="actions per recipient")
    email.add_argument("--url", default=None, help="API base URL (default NBA_HOST:NBA_PORT)")
    email.add_argument("--api-key", default=None, help="API key (default: a configured key)")
    email.set_defaults(func=cmd_email_run)

    models = sub.add_parser("models", help="the model registry")
    models.add_argument("--dir", default=None, help="registry folder (default NBA_MODEL_DIR)")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    models_sub.add_parser("list", help="registered models, the current one and the challenger")
    promote = models_sub.add_parser("promote", help="serve this version (live within a second)")
    promote.add_argument("version")
    models_sub.add_parser("rollback", help="serve the version that was current before")
    challenge = models_sub.add_parser(
        "challenge", help="score this version in shadow ('none' stops)"
    )
    challenge.add_argument("version")
    models.set_defaults(func=cmd_models)

    report = sub.add_parser("report", help="reports")
    report_sub = report.add_subparsers(dest="report_command", required=True)
    uplift = report_sub.add_parser(
        "uplift", help="uplift of every action against its control group: JSON, PNG and HTML"
    )
    uplift.add_argument("--out", required=True, help="folder for uplift.json/.png/.html")
    uplift.set_defaults(func=cmd_report_uplift)

    loadtest = sub.add_parser(
        "loadtest", help="drive the API with Locust at a fixed offered rate; results and a plot"
    )
    loadtest.add_argument("--rate", type=float, default=200.0, help="web decisions/s offered")
    loadtest.add_argument("--duration", type=float, default=60.0, help="seconds of measured load")
    loadtest.add_argument("--workers", type=int, default=2, help="API processes to start")
    loadtest.add_argument(
        "--url", default=None, help="an API already running (else one is started)"
    )
    loadtest.add_argument("--out", default="benchmarks/results", help="results folder")
    loadtest.add_argument(
        "--caller",
        type=_caller_rate,
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


if __name__ == "__main__":
    raise SystemExit(main())
