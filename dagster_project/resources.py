"""Dagster resources for PostgreSQL, Redis and SMTP, configured like the rest of Vigil.

Each connection field is optional: left unset, it is read from Vigil's settings
(VIGIL_* variables, .env) when the resource is used, so Dagster talks to the same
servers as the API and the writers, and no URL with a password is frozen into the
definitions or shown in the Dagster UI.
"""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage

import dagster as dg
import psycopg
import redis
from pydantic import Field

from querylang.results_cache import ResultsCache
from storage.database import connect
from vigil import wiring
from vigil.settings import Settings


class PostgresResource(dg.ConfigurableResource["PostgresResource"]):
    """Connections to Vigil's PostgreSQL + TimescaleDB."""

    database_url: str | None = Field(
        default=None, description="PostgreSQL URL; default: VIGIL_DATABASE_URL."
    )

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """An autocommit connection for the duration of the block."""
        with connect(self.database_url or Settings().database_url) as conn:
            yield conn


class RedisResource(dg.ConfigurableResource["RedisResource"]):
    """Vigil's Redis: a client, and the query results cache kept in it, built as the
    API builds them (vigil.wiring)."""

    redis_url: str | None = Field(default=None, description="Redis URL; default: VIGIL_REDIS_URL.")

    def client(self) -> redis.Redis:
        """A client with the API's bounded timeouts, so a dead Redis fails a job quickly."""
        return wiring.redis_client(self._settings())

    def results_cache(self) -> ResultsCache:
        """The read path's results cache, under the same settings as the API's."""
        return wiring.results_cache(self._settings())

    def _settings(self) -> Settings:
        settings = Settings()
        if self.redis_url:
            settings = settings.model_copy(update={"redis_url": self.redis_url})
        return settings


class SmtpResource(dg.ConfigurableResource["SmtpResource"]):
    """An SMTP relay that background jobs send mail through (plain SMTP, no login)."""

    host: str = Field(default="127.0.0.1", description="SMTP relay host.")
    port: int = Field(default=25, description="SMTP relay port.")
    sender: str = Field(default="vigil@localhost", description="From address.")
    timeout_s: float = Field(default=10.0, description="Connect and command timeout.")

    def send(self, message: EmailMessage) -> None:
        """Send one message, from `sender` unless it names its own From."""
        if "From" not in message:
            message["From"] = self.sender
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
            smtp.send_message(message)
