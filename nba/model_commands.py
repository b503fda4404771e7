"""The commands of the model lifecycle and the catalogue: ``seed``, ``train``, ``models``,
``evaluate`` and ``rules check`` (contract §6). Their errors end the command as
:mod:`nba.cli` describes."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nba.startup import (
    CommandError,
    compiled_catalogue,
    redis_errors,
    redis_unreachable,
    settings_or_exit,
    stack_for,
)

if TYPE_CHECKING:
    from models.registry import ModelRegistry
    from models.training import TrainingSet

__all__ = ["cmd_evaluate", "cmd_models", "cmd_rules_check", "cmd_seed", "cmd_train"]


def cmd_seed(args: argparse.Namespace) -> int:
    """Demo data straight into the store (no broker needed), then a first model."""
    from feature_store.redis_store import RedisFeatureStore
    from models.registry import ModelRegistry
    from nba.demo.seed import seed_directly, train_demo_model
    from nba.demo.world import DemoWorld

    settings = settings_or_exit()
    catalogue = compiled_catalogue(settings)
    world = DemoWorld(args.customers)
    with stack_for(settings) as endpoints:

        async def run() -> int:
            store = RedisFeatureStore.from_url(endpoints.redis_url)
            try:
                return await seed_directly(world, store)
            finally:
                await store.close()

        try:
            applied = asyncio.run(run())
        except redis_errors() as exc:
            raise redis_unreachable(settings, endpoints.redis_url, exc) from None
        print(f"seeded {len(world.customers)} customers ({applied} events applied)")
    registry = ModelRegistry(settings.model_dir)
    if registry.current() is None or args.retrain:
        version, meta = train_demo_model(world, catalogue, registry)
        print(f"trained {meta['estimator']} model {version}: {_metrics_line(meta)}")
    return 0


def _metrics_line(meta: dict[str, Any]) -> str:
    best = meta["metrics"][meta["estimator"]]
    return f"hold-out log loss {best['log_loss']:.4f}, AUC {best['auc']:.3f}"


def cmd_train(args: argparse.Namespace) -> int:
    from models.logfile import read_log
    from models.registry import ModelRegistry

    settings = settings_or_exit()
    registry = ModelRegistry(Path(args.out) if args.out else settings.model_dir)
    catalogue = compiled_catalogue(settings)
    views = {a.action.id: a.view for a in catalogue.actions}
    if args.from_stream:
        from nba.stream_log import read_history, training_set, write_log

        with stack_for(settings) as endpoints:
            rows = read_history(endpoints.kafka_brokers, settings.topic_prefix)
        print(
            f"{len(rows)} shown actions in the decision log, "
            f"{sum(r['reward'] > 0 for r in rows)} with a positive response"
        )
        if args.write_log:
            try:
                write_log(rows, Path(args.write_log))
            except OSError as exc:
                raise CommandError(f"cannot write {args.write_log}: {exc.strerror}") from None
            print(f"logged-decision file written to {args.write_log}")
        data = training_set(rows, views)
        version, meta = _train(data, registry, "decision log", "the decision log")
    elif args.log is None:
        from nba.demo.seed import train_demo_model
        from nba.demo.world import DemoWorld

        version, meta = train_demo_model(DemoWorld(), catalogue, registry)
    else:
        try:
            data = read_log(Path(args.log), views)
        except OSError as exc:
            raise CommandError(f"cannot read {exc.filename or args.log}: {exc.strerror}") from None
        except ValueError as exc:  # a bad line, with the file and line number
            raise CommandError(str(exc)) from None
        version, meta = _train(data, registry, str(args.log), str(args.log))
    print(
        f"registered {meta['estimator']} model {version} in {registry.root}: {_metrics_line(meta)}"
    )
    return 0


def _train(
    data: TrainingSet, registry: ModelRegistry, source: str, origin: str
) -> tuple[str, dict[str, Any]]:
    """Train and register; too little data, or a registry that cannot be written, ends
    the command. ``source`` goes into the model's metadata, ``origin`` into the message."""
    from models.training import train_model

    try:
        return train_model(data, registry, source=source)
    except ValueError as exc:  # too few rows, or one outcome only
        raise CommandError(f"{origin}: {exc}") from None
    except OSError as exc:
        raise CommandError(
            f"cannot write the model to {registry.root} ({exc.strerror})", code=1
        ) from None


def cmd_rules_check(args: argparse.Namespace) -> int:
    from engine.errors import CatalogueError
    from rules.catalogue import load_catalogue

    folder = Path(args.folder) if args.folder else settings_or_exit().catalogue
    if not folder.is_dir():
        raise CommandError(
            f"{folder}: " + ("not a folder" if folder.exists() else "no such folder")
        )
    try:
        catalogue = load_catalogue(folder)
    except CatalogueError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{len(exc.problems)} problem(s); catalogue refused", file=sys.stderr)
        return 1
    if not catalogue.actions and not catalogue.rules:
        # valid: the engine starts with an empty catalogue, and offers nothing until
        # actions are added (files, or PUT /v1/actions/{id})
        print(
            f"{folder}: no actions and no rules (an empty catalogue: valid, the engine "
            f"starts with it but offers nothing), channels {sorted(catalogue.channel_names())}, "
            f"version {catalogue.version}"
        )
        return 0
    print(
        f"{folder}: {len(catalogue.actions)} actions, {len(catalogue.rules)} rules, "
        f"channels {sorted(catalogue.channel_names())}, version {catalogue.version}"
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from nba.evaluate import run_evaluate

    settings = settings_or_exit()
    return run_evaluate(Path(args.log), args.policy or ["logged"], args.json, settings.catalogue)


def cmd_models(args: argparse.Namespace) -> int:
    from models.registry import ModelRegistry

    registry = ModelRegistry(Path(args.dir) if args.dir else settings_or_exit().model_dir)
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
    except OSError as exc:
        raise CommandError(f"{registry.root}: {exc.strerror} ({exc.filename})") from None
    return 0
