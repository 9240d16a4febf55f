"""The one typed settings object: environment, `.env`, then CLI options."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEMO_DIR = Path(".connect-sync")
DEMO_WAREHOUSE = DEMO_DIR / "demo.duckdb"
DEFAULT_API_URL = "https://api.outbound.io/v2"


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    """Everything the job needs to know; API keys are secrets and never printed."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    warehouse_url: str = Field(
        default=f"duckdb:///{DEMO_WAREHOUSE}",
        validation_alias=_env("CONNECT_SYNC_WAREHOUSE_URL", "warehouse_url"),
    )
    source_schema: str = Field(
        default="segment", validation_alias=_env("CONNECT_SYNC_SOURCE_SCHEMA", "source_schema")
    )
    warehouse_connect_args: SecretStr | None = Field(
        default=None,
        validation_alias=_env("CONNECT_SYNC_WAREHOUSE_CONNECT_ARGS", "warehouse_connect_args"),
        description="The warehouse driver's connect arguments: a JSON object, or the path of "
        "a JSON file (Snowflake key-pair auth, host/port/protocol; BigQuery credentials, "
        "endpoint). A secret: never printed.",
    )
    segment_views: bool = Field(
        default=False,
        validation_alias=_env("CONNECT_SYNC_SEGMENT_VIEWS", "segment_views"),
        description="Read Segment's deduplicating `<table>_view` views (BigQuery) instead of "
        "the base tables, where they exist. Off: the job keeps one row per message id itself, "
        "and reads each table once where the views would scan it again per query.",
    )
    state_url: str | None = Field(
        default=None, validation_alias=_env("CONNECT_SYNC_STATE_URL", "state_url")
    )
    state_schema: str = Field(
        default="connect_sync", validation_alias=_env("CONNECT_SYNC_STATE_SCHEMA", "state_schema")
    )
    api_url: str = Field(
        default=DEFAULT_API_URL, validation_alias=_env("CONNECT_API_URL", "api_url")
    )
    api_key: SecretStr | None = Field(
        default=None, validation_alias=_env("CONNECT_API_KEY", "api_key")
    )
    #: Where the key came from, for messages: the variable, or a Prefect Secret block.
    api_key_source: str = Field(default="CONNECT_API_KEY", exclude=True)
    batch_size: int = Field(
        default=100, ge=1, le=100, validation_alias=_env("CONNECT_SYNC_BATCH_SIZE", "batch_size")
    )
    concurrency: int = Field(
        default=8, ge=1, le=64, validation_alias=_env("CONNECT_SYNC_CONCURRENCY", "concurrency")
    )
    rate_limit: float | None = Field(
        default=None, gt=0, validation_alias=_env("CONNECT_SYNC_RATE_LIMIT", "rate_limit")
    )
    max_retries: int = Field(
        default=8, ge=0, validation_alias=_env("CONNECT_SYNC_MAX_RETRIES", "max_retries")
    )
    request_timeout_s: float = Field(
        default=30.0,
        gt=0,
        validation_alias=_env("CONNECT_SYNC_REQUEST_TIMEOUT", "request_timeout_s"),
    )
    journal_dir: Path | None = Field(
        default=None,
        validation_alias=_env("CONNECT_SYNC_JOURNAL_DIR", "journal_dir"),
        description="Folder of the local acknowledgement journal (default: next to a DuckDB "
        "state file, else $XDG_STATE_HOME/connect-sync/journal).",
    )
    chunk_size: int = Field(
        default=100_000, ge=1, validation_alias=_env("CONNECT_SYNC_CHUNK_SIZE", "chunk_size")
    )
    bucket_rows: int = Field(
        default=0,
        ge=0,
        validation_alias=_env("CONNECT_SYNC_BUCKET_ROWS", "bucket_rows"),
        description="Warehouse rows a stream holds at once on a first read: its users are "
        "read in buckets of about this many rows (0: automatic, from the table's width).",
    )
    build_threads: int = Field(
        default=1,
        ge=0,
        validation_alias=_env("CONNECT_SYNC_BUILD_THREADS", "build_threads"),
        description="Chunks of payloads built ahead, on threads, while the current one is "
        "sent (0: one at a time, on the main thread).",
    )
    lookback_hours: float = Field(
        default=24.0, ge=0, validation_alias=_env("CONNECT_SYNC_LOOKBACK_HOURS", "lookback_hours")
    )
    audience_timeout_s: float = Field(
        default=300.0,
        gt=0,
        validation_alias=_env("CONNECT_SYNC_AUDIENCE_TIMEOUT", "audience_timeout_s"),
        description="Seconds an audience query may run before the warehouse stops it.",
    )
    progress_interval_s: float = Field(
        default=10.0,
        ge=0,
        validation_alias=_env("CONNECT_SYNC_PROGRESS_INTERVAL", "progress_interval_s"),
        description="Seconds between progress lines when the output is not a terminal.",
    )
    phone_default_region: str | None = Field(
        default=None,
        validation_alias=_env("CONNECT_SYNC_PHONE_DEFAULT_REGION", "phone_default_region"),
    )

    @field_validator("source_schema", "state_schema")
    @classmethod
    def _schema_name(cls, value: str) -> str:
        # BigQuery names a dataset of another project `project-id.dataset`.
        parts = value.split(".") if value else [""]
        project, dataset = (parts[0], parts[1]) if len(parts) == 2 else ("", value)
        if (
            len(parts) > 2
            or not dataset.replace("_", "").isalnum()
            or (len(parts) == 2 and not project.replace("-", "").replace("_", "").isalnum())
        ):
            raise ValueError(
                f"schema name {value!r} must be letters, digits and underscores "
                "(a BigQuery dataset may be `project-id.dataset`)"
            )
        return value

    @field_validator("warehouse_connect_args")
    @classmethod
    def _connect_args(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_connect_args(value.get_secret_value())  # fails early, never shows the value
        return value

    @property
    def effective_state_url(self) -> str:
        """Where cursors and bookkeeping live: the warehouse itself unless told otherwise."""
        return self.state_url or self.warehouse_url

    def api_key_value(self) -> str | None:
        return self.api_key.get_secret_value() if self.api_key else None

    @property
    def destination_id(self) -> str:
        """The Connect environment this job delivers to, as a short hash of its URL and key
        (the key itself is never stored)."""
        url = self.api_url.strip().rstrip("/").lower()
        digest = hashlib.sha256(f"{url}\n{self.api_key_value() or ''}".encode())
        return digest.hexdigest()[:16]

    @property
    def books_key(self) -> str:
        """Whose delivery state this is: one source schema delivered to one destination.

        Cursors, delivered ids, fingerprints, rejections and runs are kept under this key;
        books written under the plain source schema (before 0.x) are the legacy books."""
        return f"{self.source_schema}@{self.destination_id}"

    def engine_args(self, url: str) -> dict[str, Any]:
        """The connect arguments of an engine for `url`: the warehouse's when it is the
        warehouse (the state store too, when it lives there)."""
        return self.warehouse_connect_args_value() if url == self.warehouse_url else {}

    def warehouse_connect_args_value(self) -> dict[str, Any]:
        """The warehouse's connect arguments (empty when not set)."""
        if self.warehouse_connect_args is None:
            return {}
        return parse_connect_args(self.warehouse_connect_args.get_secret_value())


def parse_connect_args(text: str) -> dict[str, Any]:
    """A JSON object, or the path of a file holding one; ValueError naming what is wrong
    without repeating the text (it holds secrets)."""
    stripped = text.strip()
    if not stripped.startswith("{"):
        path = Path(stripped).expanduser()
        try:
            stripped = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(
                f"connect arguments: neither a JSON object nor a readable file ({exc.strerror})"
            ) from None
    try:
        value = json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise ValueError(f"connect arguments are not valid JSON (line {exc.lineno})") from None
    if not isinstance(value, dict):
        raise ValueError("connect arguments must be a JSON object")
    return value
