"""Settings read once at start-up from ``NBA_*`` environment variables (contract §2).

A bad value stops start-up with one line naming the variable: :func:`load_settings`
turns pydantic's validation error into :class:`ConfigError` carrying that line.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from engine.affinity import available_cpus, format_cpus, parse_cpus

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
SCOPES = frozenset({"decide", "respond", "ingest", "read", "admin"})
DEMO_CATALOGUE = Path(__file__).resolve().parent.parent / "nba" / "demo" / "catalogue"
_HOST_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


class ConfigError(Exception):
    """Start-up configuration is unusable; the message is one line naming the variable."""


class Settings(BaseSettings):
    """Everything an operator may set. Unset Redis/Kafka means: start embedded servers."""

    model_config = SettingsConfigDict(env_prefix="NBA_", extra="ignore", frozen=True)

    redis_url: str | None = None
    kafka_brokers: str | None = None
    topic_prefix: str = "nba."
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    api_keys: Annotated[dict[str, list[str]] | None, NoDecode] = None
    catalogue: Path = DEMO_CATALOGUE
    model_dir: Path = Path("./var/models")
    data_dir: Path = Path("./var")
    decision_budget_ms: float = Field(default=20.0, gt=0)
    control_share: float = Field(default=0.05, ge=0, le=1)
    learn_negative_share: float = Field(default=1.0, gt=0, le=1)
    background_nice: int = Field(default=10, ge=0, le=19)
    api_cpus: str | None = None  # engine.affinity: the API's and the embedded Redis's CPUs
    background_cpus: str | None = None  # the stream worker's and the embedded broker's
    adaptive: bool = True  # the adaptive layer over the registered model (nba.adaptive)
    worker_loglevel: str = "WARNING"  # the stream worker's log level (streams.transport)
    http_protocol: Literal["lean", "uvicorn"] = "lean"  # engine.http_protocol, or uvicorn's

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("kafka_brokers")
    @classmethod
    def _brokers(cls, value: str | None) -> str | None:
        if value is None:
            return None
        servers = [s.strip() for s in value.split(",") if s.strip()]
        for server in servers:
            host, _, port = server.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"{server!r} is not host:port")
        if not servers:
            raise ValueError("must name at least one host:port")
        return ",".join(servers)

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not is_host(value):
            raise ValueError(f"{value!r} is not a host name or an IP address")
        return value

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not all(c.isalnum() or c in "._-" for c in value):
            raise ValueError("may hold only letters, digits, '.', '_' and '-'")
        return value

    @field_validator("api_keys", mode="before")
    @classmethod
    def _keys(cls, value: Any) -> Any:
        if value is None or value == "":
            return None
        try:
            parsed = json.loads(value) if isinstance(value, str) else value
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON ({exc.msg})") from None
        if not isinstance(parsed, dict):
            raise ValueError('must be a JSON object such as {"key": ["decide"]}')
        if not parsed:
            raise ValueError('must hold at least one key, such as {"key": ["decide"]}')
        for key, scopes in parsed.items():
            if not isinstance(key, str) or len(key) < 8:
                raise ValueError("every key must be a string of at least 8 characters")
            if not isinstance(scopes, list) or not set(scopes) <= SCOPES:
                raise ValueError(f"scopes must be a list drawn from {sorted(SCOPES)}")
            if not scopes:
                raise ValueError(f"every key needs at least one scope of {sorted(SCOPES)}")
        return parsed

    @field_validator("api_cpus", "background_cpus")
    @classmethod
    def _cpus(cls, value: str | None) -> str | None:
        if not value:
            return None
        cpus = parse_cpus(value)
        missing = cpus - available_cpus()
        if missing:
            raise ValueError(
                f"CPUs {format_cpus(missing)} are not on this machine "
                f"(it has {format_cpus(available_cpus())})"
            )
        return format_cpus(cpus)

    @field_validator("worker_loglevel")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("catalogue")
    @classmethod
    def _catalogue_exists(cls, value: Path) -> Path:
        if not value.is_dir():
            raise ValueError(f"{value} is not a folder")
        return value

    @field_validator("model_dir", "data_dir")
    @classmethod
    def _folder(cls, value: Path) -> Path:
        problem = folder_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"


def is_host(value: str) -> bool:
    """An IP address or a host name (labels of letters, digits, '-' and '_')."""
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        pass
    labels = value.removesuffix(".").split(".")
    return len(value) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels)


def folder_problem(path: Path) -> str | None:
    """Why ``path`` cannot be used as a folder (it, or the nearest part of it that
    exists, is a file), or None: an existing folder, or one that can be made."""
    for part in (path, *path.parents):
        if os.path.exists(part):
            if os.path.isdir(part):
                return None
            if part == path:
                return f"{path} is a file, not a folder"
            return f"{path} cannot be a folder: {part} is a file"
    return None


def load_settings(**overrides: Any) -> Settings:
    """Read the environment once; raise :class:`ConfigError` with one clear line."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else "?"
        message = str(error["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"NBA_{field.upper()}: {message}") from None
    except json.JSONDecodeError as exc:  # pragma: no cover - wrapped by pydantic in practice
        raise ConfigError(f"NBA_API_KEYS: not valid JSON ({exc.msg})") from None


def resolve_api_keys(settings: Settings) -> tuple[dict[str, list[str]], str | None]:
    """Configured keys, or an admin key generated once and kept under the data dir.

    Returns the keys and, when a key was generated just now, that key (to print once).
    """
    if settings.api_keys:
        return settings.api_keys, None
    path = settings.data_dir / "admin.key"
    if path.exists():
        return {path.read_text().strip(): sorted(SCOPES)}, None
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    key = "nba_" + secrets.token_urlsafe(24)
    path.write_text(key + "\n")
    path.chmod(0o600)
    return {key: sorted(SCOPES)}, key
