"""Session fixtures: the real local PostgreSQL + TimescaleDB and Redis, migrated once."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import psycopg
import pytest
from hypothesis import settings as hypothesis_settings
from hypothesis.database import DirectoryBasedExampleDatabase

from storage import tenants
from storage.database import connect
from storage.migrations import migrate
from vigil.services import local_services
from vigil.settings import LOCAL_POSTGRES_PORT, Settings

# Tests never touch the demo's database, even when pytest is run by hand.
os.environ.setdefault(
    "VIGIL_DATABASE_URL", f"postgresql://vigil@127.0.0.1:{LOCAL_POSTGRES_PORT}/vigil_test"
)

# Hypothesis profiles. "ci" (the default, `make test`) runs the same examples every
# time, so a red run is a regression, not bad luck; what searching finds is pinned
# with @example. "fuzz" (`make fuzz`, HYPOTHESIS_PROFILE=fuzz) searches: random seeds,
# many examples, and failures kept in .hypothesis/ to be replayed first next time.
# Tests set only what they need (deadline, health checks), not a fixed max_examples,
# which would defeat both; one whose examples are costly takes a fraction of the
# profile's (`max_examples=hypothesis.settings.default.max_examples // 20`).
hypothesis_settings.register_profile(
    "ci", derandomize=True, database=None, print_blob=True, deadline=None, max_examples=1000
)
hypothesis_settings.register_profile(
    "fuzz",
    max_examples=20_000,
    database=DirectoryBasedExampleDatabase(".hypothesis/examples"),
    print_blob=True,
    deadline=None,
)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def database_url(settings: Settings) -> Iterator[str]:
    """The test database, with services up and migrations applied; stops what it started."""
    started = [service for service in local_services(settings) if service.up()]
    with connect(settings.database_url) as conn:
        migrate(conn, samples_chunk_interval=settings.storage.samples_chunk_interval)
    yield settings.database_url
    for service in reversed(started):
        service.down()


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection]:
    with connect(database_url) as connection:
        yield connection


@pytest.fixture
def issued(conn: psycopg.Connection) -> tenants.IssuedKey:
    """A fresh tenant with its API key, so tests never see each other's series."""
    return tenants.create_tenant(conn, f"t-{uuid.uuid4().hex[:16]}")


@pytest.fixture
def tenant(issued: tenants.IssuedKey) -> tenants.Tenant:
    """A fresh tenant, so tests never see each other's series."""
    return issued.tenant


@pytest.fixture
def bus_settings(settings: Settings, database_url: str) -> Settings:
    """Settings with a bus of its own (fresh Redis stream names) for one test."""
    bus = settings.bus.model_copy(update={"stream_prefix": f"test:{uuid.uuid4().hex[:12]}"})
    return settings.model_copy(update={"bus": bus})


@pytest.fixture(scope="session")
def fresh_databases(
    settings: Settings, database_url: str
) -> Callable[[], AbstractContextManager[str]]:
    """Makes databases of their own, migrated, for tests that move global state such as
    the rollup watermarks; each is dropped when its context ends."""

    @contextmanager
    def fresh() -> Iterator[str]:
        name = f"vigil_test_{uuid.uuid4().hex[:12]}"
        with connect(database_url) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = database_url.rsplit("/", 1)[0] + "/" + name
        try:
            with connect(url) as conn:
                migrate(conn, samples_chunk_interval=settings.storage.samples_chunk_interval)
            yield url
        finally:
            with connect(database_url) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return fresh


@pytest.fixture
def fresh_database_url(fresh_databases: Callable[[], AbstractContextManager[str]]) -> Iterator[str]:
    """A database of its own for one test (see fresh_databases)."""
    with fresh_databases() as url:
        yield url
