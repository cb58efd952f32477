"""Configuration from ``CLIENTELE_*`` environment variables (see README, "Configuration")."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from infra.data_keys import DEV_MASTER_KEYS
from infra.kafka import MessageLimits

DEFAULT_DATABASE_URL = "sqlite:///./var/clientele.db"


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
    api_keys_file: Path = Path("./var/api-keys.json")
    default_phone_region: str = Field(default="US", min_length=2, max_length=2)
    snapshot_interval: int = Field(default=50, ge=0)
    aggregate_cache_mb: int = Field(default=64, ge=0)  # large customers kept between commands
    index_key: str = "clientele-dev-index-key"
    # the earliest business time (occurred_at) a command may carry: older dates are typos
    business_time_floor: datetime = datetime(1970, 1, 1, tzinfo=UTC)
    pool_size: int = Field(default=5, ge=1)
    command_retries: int = Field(default=5, ge=0)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    segment_refresh_seconds: float = Field(default=300.0, ge=1.0)
    seal_key: str = "clientele-dev-seal-key"
    master_keys: str = DEV_MASTER_KEYS
    seal_seconds: float = Field(default=3600.0, ge=1.0)
    rebuild_workers: int = Field(default=0, ge=0)  # processes per rebuild; 0: one per core, up to 8
    log_level: str = "INFO"
    log_json: bool = True

    @field_validator("business_time_floor")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("needs a time zone offset, e.g. 1970-01-01T00:00:00Z")
        return value.astimezone(UTC)

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith(("postgresql://", "postgres://"))

    @property
    def kafka_limits(self) -> MessageLimits:
        return MessageLimits(self.kafka_max_message_bytes)

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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
