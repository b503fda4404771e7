"""The composition root: builds real parts from the settings and hands them over.

The only place that knows every package; the packages themselves know only ``engine``.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from engine.api import Services, create_app
from engine.auth import KeyRing
from engine.config import Settings, resolve_api_keys
from engine.decisions import Decider, DecisionPolicy
from engine.errors import StoredDataError
from engine.heap import freeze_start_up
from engine.holders import LiveState
from feature_store import windows
from feature_store.adaptive_store import RedisAdaptiveStore
from feature_store.catalogue_store import RedisCatalogueStore
from feature_store.impact_store import Cell, RedisImpactStore
from feature_store.ops_store import RedisOpsStore
from feature_store.redis_store import RedisFeatureStore
from models.adaptive_kernels import warm_up
from models.layout import FeatureLayout
from models.onnx_model import load_current, load_model
from models.registry import ModelRegistry
from models.uplift import ArmCounts, CountsError, build_report
from models.uplift_report import render_html, render_png
from nba.adaptive import follow
from nba.report import utc_stamp
from rules.catalogue import Catalogue, load_catalogue
from rules.live import CatalogueManager
from streams.kafka_sink import KafkaSink

log = logging.getLogger("nba")
TOPICS = ("clickstream", "crm", "responses", "decisions", "dlq")
MODEL_POLL_S = 1.0


def topic_names(settings: Settings) -> list[str]:
    return [settings.topic(t) for t in TOPICS]


async def watch_models(
    registry: ModelRegistry, live: LiveState, every_s: float = MODEL_POLL_S
) -> None:
    """Pick up a newly promoted model (and challenger) without a restart; a model that
    fails to load is logged and the one in use keeps serving."""
    seen = -1.0
    while True:
        stamp = registry.pointer_stamp()
        if stamp != seen:
            seen = stamp
            try:
                model, challenger = await asyncio.to_thread(load_pair, registry)
                if (getattr(model, "version", None), getattr(challenger, "version", None)) != (
                    getattr(live.model, "version", None),
                    getattr(live.challenger, "version", None),
                ):
                    live.set_model(model, challenger)
                    log.warning(
                        "serving model %s, challenger %s",
                        getattr(model, "version", "prior"),
                        getattr(challenger, "version", None),
                    )
            except Exception as exc:
                log.error("could not load the promoted model: %s", exc)
        await asyncio.sleep(every_s)


def load_pair(registry: ModelRegistry) -> tuple[Any, Any]:
    model = load_current(registry)
    version = registry.challenger()
    challenger = None
    if version is not None and version != getattr(model, "version", None):
        meta = registry.metadata(version)
        challenger = load_model(
            registry.path(version), version, FeatureLayout.from_json(meta["features"])
        )
    return model, challenger


def build_services(
    settings: Settings, redis_url: str, brokers: str, catalogue: Catalogue | None = None
) -> Services:
    """``catalogue``: the files of ``NBA_CATALOGUE`` when the caller has loaded them."""
    keys, generated = resolve_api_keys(settings)
    if generated:
        print(
            f"generated admin API key (kept in {settings.data_dir / 'admin.key'}): {generated}",
            flush=True,
        )
    store = RedisFeatureStore.from_url(redis_url)
    live = LiveState(catalogue if catalogue is not None else load_catalogue(settings.catalogue))
    catalogue_store = RedisCatalogueStore.from_url(redis_url)
    manager = CatalogueManager(settings.catalogue, catalogue_store, live.set_catalogue)
    registry = ModelRegistry(settings.model_dir)
    sink = KafkaSink(brokers, settings.data_dir / "spool")
    policy = DecisionPolicy(
        control_share=settings.control_share, budget_s=settings.decision_budget_ms / 1000
    )
    decider = Decider(store, live, sink, policy, decisions_topic=settings.topic("decisions"))

    async def warm_store() -> None:
        """Connect (and detect a cluster) before the first request, whose budget is 20 ms."""
        try:
            await store.ping()
        except Exception as exc:
            log.error("the store is not reachable yet (%s); decisions fall back until it is", exc)

    async def initial_catalogue() -> None:
        """The files plus the stored changes; if the store is away, the files alone."""
        try:
            await manager.reload()
        except Exception as exc:
            log.error("catalogue changes not loaded yet (%s); the watcher retries", exc)

    async def warm_kernels() -> None:
        """The compiled code (the adaptive model's, the window sums) loaded before the
        first request."""
        warm_up()
        windows.warm_up()

    async def flush_logs() -> None:
        """Records still waiting for a pause in the decisions go to the sink (or its
        spool) before it closes."""
        decider.logs.flush()

    impact = RedisImpactStore.from_url(redis_url)
    adaptive = RedisAdaptiveStore.from_url(redis_url)
    ops = RedisOpsStore.from_url(redis_url)

    async def uplift_report(kind: str) -> tuple[bytes, str]:
        try:  # counts ahead of their decisions are reported, flagged; corrupt ones refused
            cells = arm_counts(await impact.cells(), live.catalogue)
            report = build_report(cells, generated_at=utc_stamp())
        except CountsError as exc:
            raise StoredDataError(f"the uplift counters cannot be used: {exc}") from exc
        if kind == "html":
            page = await asyncio.to_thread(lambda: render_html(report, render_png(report)))
            return page.encode(), "text/html; charset=utf-8"
        return report.to_json().encode(), "application/json"

    services = Services(
        store=store,
        live=live,
        sink=sink,
        decider=decider,
        keys=KeyRing(keys),
        catalogue_admin=manager,
        uplift_report=uplift_report,
        stream_workers=ops.workers,
        topic_prefix=settings.topic_prefix,
        on_start=[sink.start, warm_store, initial_catalogue, warm_kernels, freeze_start_up],
        background=[
            lambda: watch_models(registry, live),
            manager.watch,
            # off: the registered model alone ranks, and decisions log no learner entries
            *([lambda: follow(adaptive, live)] if settings.adaptive else []),
        ],
        on_close=[
            flush_logs,
            sink.close,
            store.close,
            catalogue_store.close,
            impact.close,
            ops.close,
            adaptive.close,
        ],
    )
    return services


def arm_counts(cells: list[Cell], catalogue: Catalogue) -> list[ArmCounts]:
    """The stored cells with each action's campaign from the live catalogue."""
    out = []
    for cell in cells:
        entry = catalogue.by_id.get(cell.action_id)
        campaign = entry.action.attributes.get("campaign") if entry else None
        out.append(
            ArmCounts(
                cell.action_id,
                cell.channel,
                None if campaign is None else str(campaign),
                cell.group,
                cell.decisions,
                dict(cell.responders),
                cell.value_sum,
                cell.value_sum_sq,
            )
        )
    return out


def build_app(
    settings: Settings, redis_url: str, brokers: str, catalogue: Catalogue | None = None
) -> object:
    return create_app(build_services(settings, redis_url, brokers, catalogue))


def data_path(settings: Settings, *parts: str) -> Path:
    path = settings.data_dir.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def app_from_environment() -> object:
    """The app of one of several API worker processes (``nba serve --workers N``)."""
    from engine.config import load_settings

    settings = load_settings()
    assert settings.redis_url is not None and settings.kafka_brokers is not None
    return build_app(settings, settings.redis_url, settings.kafka_brokers)
