"""The retention job drops raw chunks past the window, in process against a real database,
and its schedule runs it daily."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import dagster as dg
import psycopg

from dagster_project.resources import PostgresResource
from dagster_project.retention import retention, retention_schedule
from storage import tenants
from tests.dagster_project.counter_samples import DAY_US, HOUR_US, write_samples
from tests.stored import sample_count


def test_raw_samples_past_the_window_are_dropped(
    postgres: PostgresResource, db: psycopg.Connection, fresh_tenant: tenants.Tenant
) -> None:
    now_us = time.time_ns() // 1_000
    write_samples(db, fresh_tenant, now_us - 10 * DAY_US, now_us - 10 * DAY_US + HOUR_US)
    recent = write_samples(db, fresh_tenant, now_us - 2 * HOUR_US, now_us - HOUR_US)

    result = retention.execute_in_process(resources={"postgres": postgres})

    assert result.success
    assert sample_count(db, fresh_tenant.id) == recent


def test_the_schedule_runs_retention_daily() -> None:
    tick = datetime(2026, 3, 1, 0, 15, tzinfo=UTC)
    data = retention_schedule.evaluate_tick(
        dg.build_schedule_context(scheduled_execution_time=tick)
    )
    assert retention_schedule.cron_schedule == "15 0 * * *"
    assert data.run_requests is not None and len(data.run_requests) == 1
