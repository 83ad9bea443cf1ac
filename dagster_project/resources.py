"""Dagster resources: Vigil's store and its Redis, as the composition root (vigil.wiring)
builds them for the background jobs.

Each URL field is optional: left unset, it is read from Vigil's settings (VIGIL_*
variables, .env) when the resource is used, so Dagster talks to the same servers as
the API and the writers, and no URL with a password is frozen into the definitions or
shown in the Dagster UI.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import psycopg
from pydantic import Field

from dagster_project.maintenance import Maintenance
from querylang.results_cache import ResultsCache
from storage.database import connect
from vigil import wiring


class PostgresResource(dg.ConfigurableResource["PostgresResource"]):
    """Vigil's store as the jobs use it: connections to its PostgreSQL + TimescaleDB, and
    the settings they maintain it by (rollup, repair, retention)."""

    database_url: str | None = Field(
        default=None, description="PostgreSQL URL; default: VIGIL_DATABASE_URL."
    )

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """An autocommit connection for the duration of the block."""
        with connect(wiring.job_settings(database_url=self.database_url).database_url) as conn:
            yield conn

    def maintenance(self) -> Maintenance:
        """The rollup, repair and retention settings, as the rest of Vigil reads them."""
        return wiring.maintenance(wiring.job_settings(database_url=self.database_url))


class RedisResource(dg.ConfigurableResource["RedisResource"]):
    """Vigil's Redis, for the query results cache kept in it."""

    redis_url: str | None = Field(default=None, description="Redis URL; default: VIGIL_REDIS_URL.")

    def results_cache(self) -> ResultsCache:
        """The read path's results cache, under the same settings as the API's."""
        return wiring.results_cache(wiring.job_settings(redis_url=self.redis_url))
