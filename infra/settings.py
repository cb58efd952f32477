"""Configuration from ``CLIENTELE_*`` environment variables (see README, "Configuration").

Precedence, highest first: environment variables; the settings file (``CLIENTELE_ENV_FILE``,
default ``./var/dev/clientele.env``, which ``clientele dev up`` writes and ``dev down``
removes; absent = skipped, empty = none); the defaults (the embedded mode).

Light to import on purpose (no Kafka, no crypto): every CLI call reads it first.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from infra.kafka import MessageLimits
    from infra.resilience import Backoff

DEFAULT_DATABASE_URL = "sqlite:///./var/clientele.db"
DEV_SETTINGS_FILE = Path("var/dev/clientele.env")
ENV_FILE_VARIABLE = "CLIENTELE_ENV_FILE"
# The key of `make run` and the tests, NOT for production (set CLIENTELE_MASTER_KEYS).
DEV_MASTER_KEYS = (
    "dev:" + base64.b64encode(hashlib.sha256(b"clientele-dev-master-key").digest()).decode()
)
DEV_INDEX_KEY = "clientele-dev-index-key"
DEV_SEAL_KEY = "clientele-dev-seal-key"
# kafka-python client options, each set by CLIENTELE_KAFKA_<OPTION> (unset: the client's default).
KAFKA_CLIENT_OPTIONS = (
    "security_protocol",
    "sasl_mechanism",
    "sasl_plain_username",
    "sasl_plain_password",
    "ssl_cafile",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_password",
    "ssl_crlfile",
    "ssl_check_hostname",
)
# The secrets whose defaults are public (in this file): refused outside development.
DEV_SECRETS = {
    "master_keys": DEV_MASTER_KEYS,
    "seal_key": DEV_SEAL_KEY,
    "index_key": DEV_INDEX_KEY,
}


class Settings(BaseSettings):
    """Every knob of the service; defaults give the embedded mode."""

    model_config = SettingsConfigDict(env_prefix="CLIENTELE_", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    read_database_url: str | None = None
    kafka_bootstrap: str | None = None
    kafka_topic_prefix: str = ""
    kafka_partitions: int = Field(default=12, ge=1, le=256)
    # The largest record on our topics (producers, topic max.message.bytes, consumer fetches).
    kafka_max_message_bytes: int = Field(default=1_048_576, ge=4096, le=104_857_600)
    # How long a group member may go unheard before the broker ends its membership: how soon a
    # killed member's partitions move on, and how long a broker may hold a first join (tansu:
    # half of it). Heartbeats go every second, so at least 3 s.
    kafka_session_timeout_ms: int = Field(default=10_000, ge=3_000, le=300_000)
    # TLS and SASL for every Kafka client (see KAFKA_CLIENT_OPTIONS and README, Security).
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] | None = None
    kafka_sasl_mechanism: (
        Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI"] | None
    ) = None
    kafka_sasl_plain_username: str | None = None
    kafka_sasl_plain_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_ssl_password: SecretStr | None = None
    kafka_ssl_crlfile: Path | None = None
    kafka_ssl_check_hostname: bool | None = None
    api_keys_file: Path = Path("./var/api-keys.json")
    default_phone_region: str = Field(default="US", min_length=2, max_length=2)
    snapshot_interval: int = Field(default=50, ge=0)
    aggregate_cache_mb: int = Field(default=64, ge=0)  # customers kept between commands
    index_key: str = DEV_INDEX_KEY
    # the earliest business time (occurred_at) a command may carry: older dates are typos
    business_time_floor: datetime = datetime(1970, 1, 1, tzinfo=UTC)
    pool_size: int = Field(default=5, ge=1)
    # How long a request waits for a pooled database connection before it is answered 503
    # (and how long a pool tries one reconnection before starting afresh).
    database_timeout_seconds: float = Field(default=3.0, gt=0, le=300)
    # Waiting out an outage: the first retry after about this long, doubling up to the maximum.
    backoff_initial_seconds: float = Field(default=0.5, gt=0, le=60)
    backoff_max_seconds: float = Field(default=5.0, gt=0, le=600)
    command_retries: int = Field(default=5, ge=0)
    # Campaign frequency cap: at most this many treatment touches per customer in any window
    # of this many days, across campaigns (issue 19).
    campaign_max_touches: int = Field(default=3, ge=1, le=1000)
    campaign_cap_window_days: int = Field(default=30, ge=1, le=3650)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # Requests per API key, e.g. "100/second;2000/minute" (``limits`` notation); empty: none.
    rate_limit: str = ""
    segment_refresh_seconds: float = Field(default=300.0, ge=1.0)
    seal_key: str = DEV_SEAL_KEY
    master_keys: str = DEV_MASTER_KEYS
    seal_seconds: float = Field(default=3600.0, ge=1.0)
    policy_sweep_seconds: float = Field(default=3600.0, ge=1.0)
    # the policy runner inside `serve`; unset: in embedded mode only (full mode: `policies run`)
    policies_in_serve: bool | None = None
    model_fit_seconds: float = Field(default=86400.0, ge=0.0)  # 0: the policy runner never fits
    # how often the policy runner launches the campaigns whose time has come; 0: never
    campaign_schedule_seconds: float = Field(default=30.0, ge=0.0)
    rebuild_workers: int = Field(default=0, ge=0)  # processes per rebuild; 0: one per core, up to 8
    log_level: str = "INFO"
    log_json: bool = True
    # "dev": the development defaults of the secrets are allowed; "production": refused.
    # Unset: dev for the embedded configuration (SQLite, no Kafka), production otherwise.
    env: Literal["dev", "production"] | None = None

    @field_validator("business_time_floor")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("needs a time zone offset, e.g. 1970-01-01T00:00:00Z")
        return value.astimezone(UTC)

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        if value.strip():
            from limits import parse_many  # noqa: PLC0415 - only when a limit is set

            parse_many(value)  # ValueError naming what it could not read
        return value

    @model_validator(mode="after")
    def _no_dev_secrets_outside_dev(self) -> Settings:
        if self.dev_mode:
            return self
        defaults = [name for name, dev in DEV_SECRETS.items() if getattr(self, name) == dev]
        if defaults:
            names = ", ".join(f"CLIENTELE_{name.upper()}" for name in defaults)
            raise ValueError(
                f"{names} still hold the development default, which is public; set "
                f"{'them' if len(defaults) > 1 else 'it'} (see README, Security), or declare "
                "a development setup with CLIENTELE_ENV=dev"
            )
        return self

    @property
    def dev_mode(self) -> bool:
        """Whether development defaults are allowed: ``CLIENTELE_ENV=dev``, or no
        ``CLIENTELE_ENV`` and the embedded configuration (SQLite store, no Kafka)."""
        if self.env is not None:
            return self.env == "dev"
        return not self.is_postgres and self.kafka_bootstrap is None

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith(("postgresql://", "postgres://"))

    @property
    def kafka_limits(self) -> MessageLimits:
        from infra.kafka import MessageLimits  # noqa: PLC0415 - Kafka only when used

        return MessageLimits(self.kafka_max_message_bytes)

    @property
    def kafka_client_options(self) -> dict[str, object]:
        """The TLS/SASL options every kafka-python client gets (only those set)."""
        options: dict[str, object] = {}
        for name in KAFKA_CLIENT_OPTIONS:
            value = getattr(self, f"kafka_{name}")
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            if value is not None:
                options[name] = str(value) if isinstance(value, Path) else value
        return options

    @property
    def backoff(self) -> Backoff:
        from infra.resilience import Backoff  # noqa: PLC0415 - light to import

        return Backoff(self.backoff_initial_seconds, self.backoff_max_seconds)

    @property
    def read_models_url(self) -> str:
        """Where read models live: explicit, else beside the store (a sibling SQLite file,
        so projection writes never wait on event-store writes; the same PostgreSQL database)."""
        if self.read_database_url:
            return self.read_database_url
        if self.database_url.startswith("sqlite:///") and not self.database_url.endswith(
            ":memory:"
        ):
            path = self.database_url.removeprefix("sqlite:///")
            stem, dot, suffix = path.rpartition(".")
            return f"sqlite:///{stem}-read.{suffix}" if dot else f"sqlite:///{path}-read"
        return self.database_url


def settings_file() -> Path | None:
    """The settings file to read: ``CLIENTELE_ENV_FILE`` (empty: none), else the one
    ``clientele dev up`` writes; None when there is none."""
    chosen = os.environ.get(ENV_FILE_VARIABLE)
    if chosen is not None and not chosen.strip():
        return None
    path = Path(chosen) if chosen else DEV_SETTINGS_FILE
    return path if path.is_file() else None


class ConfigurationError(Exception):
    """Only a change of configuration can fix this: settings refused at start, or what a
    running process met (a process exits on it, :mod:`infra.resilience`). The message names
    each setting and why (never its value: it may be a secret)."""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once (environment, then the settings file).

    Raises :class:`ConfigurationError` naming each refused setting."""
    try:
        return Settings(_env_file=settings_file())
    except ValidationError as error:
        raise ConfigurationError(refusals(error)) from None


def refusals(error: ValidationError) -> str:
    """One line per refused setting, ``CLIENTELE_NAME: reason`` (the value left out)."""
    lines = []
    for problem in error.errors(include_input=False, include_url=False):
        where = ".".join(str(part) for part in problem["loc"])
        reason = str(problem["msg"]).removeprefix("Value error, ")
        lines.append(f"CLIENTELE_{where.upper()}: {reason}" if where else reason)
    return "; ".join(lines)


def origin(variable: str) -> str:
    """Where the configured value of ``variable`` (``CLIENTELE_…``) comes from: the variable
    itself, the settings file (its path), or ``"default"``."""
    if variable in os.environ:
        return variable
    found = settings_file()
    if found is not None:
        for line in found.read_text(encoding="utf-8").splitlines():
            name = line.strip().removeprefix("export ").partition("=")[0].strip()
            if name == variable:
                return f"./{found}" if not found.is_absolute() else str(found)
    return "default"


def redacted(url: str) -> str:
    """``url`` with its password shown as ``***`` (user, host, port and path kept)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def describe_store(settings: Settings) -> str:
    """One line naming the store (and broker) a command uses and where each was configured,
    e.g. ``store: postgresql://postgres@127.0.0.1:5433/clientele (from ./var/dev/clientele.env)``."""
    line = f"store: {redacted(settings.database_url)} (from {origin('CLIENTELE_DATABASE_URL')})"
    if settings.kafka_bootstrap:
        line += f"; Kafka: {settings.kafka_bootstrap} (from {origin('CLIENTELE_KAFKA_BOOTSTRAP')})"
    return line


@dataclass
class StoreNotice:
    """Says once per process which store the configured settings open (``say`` is set by the
    CLI: one line on stderr); :func:`bootstrap.build` calls it when it reads them."""

    say: Callable[[str], None] | None = None
    said: bool = False

    def arm(self, say: Callable[[str], None]) -> None:
        """Say the next store opened with ``say`` (once per command)."""
        self.say, self.said = say, False

    def __call__(self, settings: Settings) -> None:
        if self.say is not None and not self.said:
            self.said = True
            self.say(describe_store(settings))


STORE_NOTICE = StoreNotice()
