"""Vigil's one settings class: VIGIL_* environment variables and an optional .env file."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from storage.durations import parse_duration

PROJECT_ROOT = Path(__file__).resolve().parent.parent

LOCAL_POSTGRES_PORT = 55432
LOCAL_REDIS_PORT = 56379


def _duration_text(value: object) -> object:
    """`90s`, `15m`, `2h` or `1d12h` as a timedelta; other forms go to pydantic as they are."""
    return parse_duration(value) if isinstance(value, str) and value[-1:].isalpha() else value


# A duration setting: accepts Vigil's short forms besides pydantic's own.
Duration = Annotated[timedelta, BeforeValidator(_duration_text)]


def _has_valid_port(url: str) -> bool:
    try:
        urlsplit(url).port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return False
    return True


class StorageSettings(BaseModel):
    """How samples are laid out and written."""

    samples_chunk_interval: Duration = Field(
        default=timedelta(hours=2),
        description="Time span of one samples chunk; applies to chunks created from now on.",
    )

    @field_validator("samples_chunk_interval")
    @classmethod
    def _chunk_interval_sane(cls, value: timedelta) -> timedelta:
        if not timedelta(minutes=1) <= value <= timedelta(days=30):
            raise ValueError("must be between 1m and 30d, e.g. 2h")
        return value


class BusSettings(BaseModel):
    """The bus between the API and the writers."""

    kind: Literal["redis", "kafka"] = Field(
        default="redis", description="redis: Redis Streams (default); kafka: a Kafka cluster."
    )
    partitions: int = Field(default=8, ge=1, le=1024, description="Partitions (streams/topic).")
    stream_prefix: str = Field(default="vigil:ingest", description="Redis stream key prefix.")
    group: str = Field(default="vigil-writers", description="Consumer group of the writers.")
    kafka_bootstrap: str = Field(default="127.0.0.1:9092", description="Kafka host:port list.")
    kafka_topic: str = Field(default="vigil-ingest", description="Kafka topic.")
    max_backlog: int = Field(
        default=200_000,
        ge=1,
        description="Unwritten envelopes on the bus beyond which the API answers 503.",
    )
    reclaim_idle: Duration = Field(
        default=timedelta(seconds=30),
        description="How long a delivery may stay unacknowledged before another writer takes it.",
    )


class IngestSettings(BaseModel):
    """Limits the ingestion API enforces per request, per sample and per API key."""

    max_body_bytes: int = Field(default=16 << 20, ge=1024, description="Largest body, decoded.")
    max_batch_samples: int = Field(default=100_000, ge=1, description="Most samples per request.")
    max_labels: int = Field(default=30, ge=1, description="Most labels per series.")
    max_label_name_length: int = Field(default=1024, ge=1, description="Also bounds metric names.")
    max_label_value_length: int = Field(default=2048, ge=1)
    max_future: Duration = Field(
        default=timedelta(minutes=10), description="How far ahead of now a sample may be."
    )
    requests_per_s: float = Field(default=1_000.0, gt=0, description="Per API key, sustained.")
    request_burst: float = Field(default=2_000.0, gt=0, description="Per API key, bucket size.")
    samples_per_s: float = Field(default=1_000_000.0, gt=0, description="Per API key, sustained.")
    sample_burst: float = Field(default=2_000_000.0, gt=0, description="Per API key, bucket size.")


class QuerySettings(BaseModel):
    """Limits and caching of the read path (PromQL and raw SQL)."""

    timeout: Duration = Field(
        default=timedelta(seconds=30), description="Longest a query may run before it is cancelled."
    )
    max_series: int = Field(default=50_000, ge=1, description="Most series one selector may read.")
    max_points: int = Field(
        default=11_000, ge=1, description="Most steps in a range query (as Prometheus)."
    )
    max_samples: int = Field(
        default=50_000_000, ge=1, description="Most samples (or points) held in memory by a query."
    )
    lookback_delta: Duration = Field(
        default=timedelta(minutes=5), description="How far back an instant selector looks."
    )
    nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="CPU niceness of query threads and their PostgreSQL backends (0: off), "
        "so queries yield shared cores to ingestion.",
    )
    raw_sample_budget: int = Field(
        default=50_000_000,
        ge=0,
        description="Raw samples a query may plan to read and still be answered exactly "
        "from raw samples (where raw retention covers it); larger queries read rollup tiers. "
        "The default keeps a 1 h query over 100k series at a 10 s interval raw.",
    )
    rule_pool_size: int = Field(
        default=4,
        ge=1,
        description="Database connections of rule evaluation's own pool, apart from "
        "the one dashboards use, so alerts keep evaluating while dashboards are slow.",
    )
    nominal_sample_interval: Duration = Field(
        default=timedelta(seconds=10),
        description="The sample interval the planner assumes when it estimates raw samples "
        "(agents push every 10 s by default).",
    )
    sql_row_limit: int = Field(default=10_000, ge=1, description="Most rows `/v1/sql` returns.")
    sql_timeout: Duration = Field(
        default=timedelta(seconds=10), description="Statement timeout of `/v1/sql`."
    )
    cache_freshness: Duration = Field(
        default=timedelta(minutes=10),
        description="Results newer than this are always recomputed; older ones are cached.",
    )
    cache_ttl: Duration = Field(
        default=timedelta(hours=25), description="How long a cached extent lives unused."
    )


class RollupSettings(BaseModel):
    """Rollup tiers (1m, 1h, 1d): when buckets close, repair batches, tier choice."""

    settle: Duration = Field(
        default=timedelta(minutes=1),
        description="How long after a 1m bucket ends before it is rolled up; later samples "
        "into it are repaired through the invalidation log.",
    )
    max_buckets_per_run: int = Field(
        default=1_440,
        ge=1,
        description="Most buckets of one tier a rollup run materialises (catch-up is "
        "spread over runs).",
    )
    repair_batch: int = Field(
        default=1_000,
        ge=1,
        description="Most dirty (tenant, metric, minute) rows one repair transaction takes.",
    )
    repair_batches_per_run: int = Field(
        default=20,
        ge=1,
        description="Repair transactions one repair job run may chain while the log has "
        "more, so a backfill is repaired at least as fast as it is ingested.",
    )
    points_per_step: float = Field(
        default=1.0,
        gt=0,
        description="The query planner uses a tier only if its resolution gives at least "
        "this many buckets per step.",
    )


class RetentionSettings(BaseModel):
    """How long each tier keeps data; older chunks are dropped whole."""

    raw: Duration = Field(default=timedelta(days=2), description="Raw samples.")
    rollup_1m: Duration = Field(default=timedelta(days=14), description="1-minute rollups.")
    rollup_1h: Duration = Field(default=timedelta(days=90), description="1-hour rollups.")
    rollup_1d: Duration = Field(default=timedelta(days=730), description="1-day rollups.")

    def of(self, tier: str) -> timedelta:
        """The retention of a tier by name: raw, 1m, 1h or 1d."""
        return {
            "raw": self.raw,
            "1m": self.rollup_1m,
            "1h": self.rollup_1h,
            "1d": self.rollup_1d,
        }[tier]


class DagsterSettings(BaseModel):
    """The Dagster webserver and daemon that run Vigil's background jobs (`vigil up`)."""

    port: int = Field(
        default=3070, ge=1, le=65535, description="Port of the Dagster UI, on 127.0.0.1."
    )
    storage_url: str | None = Field(
        default=None,
        description="PostgreSQL URL for Dagster's own run, event and schedule storage "
        "(needs the dagster-postgres package); default: SQLite under data_dir/dagster.",
    )

    @field_validator("storage_url")
    @classmethod
    def _postgres_storage_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("postgresql", "postgres"):
            raise ValueError("must look like postgresql://USER[:PASSWORD]@HOST:PORT/DATABASE")
        return value


class ServicesSettings(BaseModel):
    """The project-local PostgreSQL and Redis that `vigil services up` runs."""

    postgres_port: int = LOCAL_POSTGRES_PORT
    redis_port: int = LOCAL_REDIS_PORT
    postgres_bin_dir: Path | None = Field(
        default=None,
        description="Folder with pg_ctl/initdb; default: the newest PostgreSQL with TimescaleDB.",
    )


class Settings(BaseSettings):
    """Everything configurable in Vigil, read once by the composition root."""

    model_config = SettingsConfigDict(
        env_prefix="VIGIL_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    database_url: str = f"postgresql://vigil@127.0.0.1:{LOCAL_POSTGRES_PORT}/vigil"
    redis_url: str = f"redis://127.0.0.1:{LOCAL_REDIS_PORT}/0"
    data_dir: Path = PROJECT_ROOT / "var"
    storage: StorageSettings = StorageSettings()
    bus: BusSettings = BusSettings()
    ingest: IngestSettings = IngestSettings()
    query: QuerySettings = QuerySettings()
    rollup: RollupSettings = RollupSettings()
    retention: RetentionSettings = RetentionSettings()
    dagster: DagsterSettings = DagsterSettings()
    services: ServicesSettings = ServicesSettings()

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if (
            parts.scheme not in ("postgresql", "postgres")
            or not parts.path.strip("/")
            or not _has_valid_port(value)
        ):
            raise ValueError("must look like postgresql://USER[:PASSWORD]@HOST:PORT/DATABASE")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("redis", "rediss", "unix") or not _has_valid_port(value):
            raise ValueError("must look like redis://HOST:PORT/DB")
        return value
