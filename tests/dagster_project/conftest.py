"""Fixtures for the Dagster layer: a database of its own (the rollup watermarks are
global), resources aimed at it, a tenant, and a midnight to write samples around."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from dagster_project.resources import PostgresResource, RedisResource
from storage import tenants
from storage.database import connect
from tests.dagster_project.counter_samples import DAY_US, HOUR_US


@pytest.fixture
def postgres(fresh_database_url: str) -> PostgresResource:
    return PostgresResource(database_url=fresh_database_url)


@pytest.fixture
def redis_resource(database_url: str) -> RedisResource:
    """Vigil's Redis, from the settings (the services are up once `database_url` is)."""
    return RedisResource()


@pytest.fixture
def db(fresh_database_url: str) -> Iterator[psycopg.Connection]:
    with connect(fresh_database_url) as conn:
        yield conn


@pytest.fixture
def fresh_tenant(db: psycopg.Connection) -> tenants.Tenant:
    return tenants.create_tenant(db, f"t-{uuid.uuid4().hex[:16]}").tenant


@pytest.fixture
def midnight_us() -> int:
    """A UTC midnight at least three hours ago: samples around it let every tier,
    1d included, build a closed bucket now."""
    now_us = time.time_ns() // 1_000
    return (now_us - 3 * HOUR_US) // DAY_US * DAY_US
