"""Vigil's one settings class: VIGIL_* environment variables and an optional .env file."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vigil.durations import parse_duration

PROJECT_ROOT = Path(__file__).resolve().parent.parent

LOCAL_POSTGRES_PORT = 55432
LOCAL_REDIS_PORT = 56379


def _has_valid_port(url: str) -> bool:
    try:
        urlsplit(url).port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return False
    return True


class StorageSettings(BaseModel):
    """How samples are laid out and written."""

    samples_chunk_interval: timedelta = Field(
        default=timedelta(hours=2),
        description="Time span of one samples chunk; applies to chunks created from now on.",
    )

    @field_validator("samples_chunk_interval", mode="before")
    @classmethod
    def _duration_text(cls, value: object) -> object:
        return parse_duration(value) if isinstance(value, str) and value[-1:].isalpha() else value

    @field_validator("samples_chunk_interval")
    @classmethod
    def _chunk_interval_sane(cls, value: timedelta) -> timedelta:
        if not timedelta(minutes=1) <= value <= timedelta(days=30):
            raise ValueError("must be between 1m and 30d, e.g. 2h")
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
