"""What a command checks and starts before its work, and how it stops on a problem: the
settings, the embedded or configured servers, the catalogue, the address the API listens
on. Each problem ends the command with one line naming the variable behind it
(:class:`CommandError`, printed by :func:`nba.cli.main`)."""

from __future__ import annotations

import errno
import logging
import socket
import sys
import urllib.parse
from typing import TYPE_CHECKING

from engine.config import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    import subprocess

    from engine.embedded import EmbeddedStack, StackEndpoints
    from rules.catalogue import Catalogue

__all__ = [
    "CommandError",
    "CommandStack",
    "check_listen",
    "compiled_catalogue",
    "redacted",
    "redis_errors",
    "redis_unreachable",
    "settings_or_exit",
    "stack_for",
]


class CommandError(Exception):
    """Ends a command: :func:`main` prints ``nba <command>: <message>`` and exits ``code``."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        print(f"nba: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def stack_for(settings: Settings) -> CommandStack:
    """The embedded servers where none is configured: Redis with the API's priority and
    CPUs (a decision waits on it) but its own background work on the background's, and
    the broker with the background's."""
    from engine.affinity import cpus_of
    from engine.embedded import EmbeddedStack
    from nba.wiring import topic_names

    return CommandStack(
        settings,
        EmbeddedStack(
            settings.data_dir / "embedded",
            redis_url=settings.redis_url,
            kafka_brokers=settings.kafka_brokers,
            topics=topic_names(settings),
            broker_nice=settings.background_nice,
            redis_cpus=cpus_of(settings.api_cpus),
            background_cpus=cpus_of(settings.background_cpus),
        ),
    )


class CommandStack:
    """An :class:`~engine.embedded.EmbeddedStack` whose failure to start ends the command
    with one line: an external broker that does not answer names ``NBA_KAFKA_BROKERS``.

    A configured Redis is not checked here: the API starts without it and serves fallback
    decisions until it answers; the commands that need it say so when they reach it.
    """

    def __init__(self, settings: Settings, stack: EmbeddedStack) -> None:
        self.settings = settings
        self.stack = stack
        self.stack_dir = settings.data_dir.resolve()

    @property
    def started_processes(self) -> list[subprocess.Popen[bytes]]:
        return self.stack.started_processes

    def __enter__(self) -> StackEndpoints:
        from engine.embedded import EmbeddedStackError

        # the Kafka client logs every failed connection (five a second) while it retries
        kafka_log = logging.getLogger("aiokafka")
        level = kafka_log.level
        kafka_log.setLevel(logging.CRITICAL)
        try:
            endpoints = self.stack.start()
        except EmbeddedStackError as exc:
            raise CommandError(self._problem(exc), code=1) from None
        except OSError as exc:  # its servers' folders, under the data dir
            if not str(exc.filename or "").startswith(str(self.stack_dir)):
                raise
            raise CommandError(
                f"NBA_DATA_DIR: cannot create {exc.filename} ({exc.strerror})", code=1
            ) from None
        finally:
            kafka_log.setLevel(level)
        if self.stack.shared_with is not None:
            print(
                f"using the embedded Redis ({endpoints.redis_url}) and broker "
                f"({endpoints.kafka_brokers}) of process {self.stack.shared_with}, on the same "
                "NBA_DATA_DIR; they stop when it stops",
                file=sys.stderr,
                flush=True,
            )
        return endpoints

    def __exit__(self, *exc: object) -> None:
        self.stack.stop()

    def _problem(self, exc: Exception) -> str:
        brokers = self.settings.kafka_brokers
        if brokers and brokers in str(exc):  # its messages about the broker name it
            if exc.__cause__ is not None:  # the client never connected
                return f"NBA_KAFKA_BROKERS: cannot reach Kafka at {brokers} (no broker answered)"
            return f"NBA_KAFKA_BROKERS: {exc}"
        return f"cannot start the embedded servers: {exc}"


def redacted(url: str) -> str:
    """``url`` without its password."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def redis_errors() -> tuple[type[Exception], ...]:
    """What a command that needs Redis gets when Redis is away."""
    from engine.errors import StoreUnavailable
    from feature_store.connect import UNAVAILABLE

    return (*UNAVAILABLE, StoreUnavailable)


def redis_unreachable(settings: Settings, url: str, exc: BaseException) -> CommandError:
    variable = "NBA_REDIS_URL: " if settings.redis_url else ""
    reason = exc.__cause__ or exc
    return CommandError(f"{variable}cannot reach Redis at {redacted(url)} ({reason})", code=1)


def compiled_catalogue(settings: Settings) -> Catalogue:
    """``NBA_CATALOGUE`` compiled; a refused one lists its problems on stderr, each with its
    file and line, and ends the command."""
    from engine.errors import CatalogueError
    from rules.catalogue import load_catalogue

    try:
        return load_catalogue(settings.catalogue)
    except CatalogueError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        raise CommandError(
            f"NBA_CATALOGUE: {len(exc.problems)} problem(s) in {settings.catalogue}; "
            "catalogue refused"
        ) from None


def check_listen(host: str, port: int, host_from: str, port_from: str) -> None:
    """The API can listen on ``host:port``: checked before anything starts, with the
    setting to blame (uvicorn's own error names neither)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise CommandError(f"{host_from}: cannot resolve {host!r} ({exc.strerror})") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            blame = host_from if exc.errno == errno.EADDRNOTAVAIL else port_from
            raise CommandError(
                f"{blame}: cannot listen on {host}:{port} ({exc.strerror})", code=1
            ) from None
