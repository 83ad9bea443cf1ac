"""The one wiring point Dagster loads (pyproject's `[tool.dagster]` names it, so `dagster
dev` and `dagster job list` find it from the project root): every job, schedule, sensor
and resource of Vigil's background work."""

from __future__ import annotations

import dagster as dg

from dagster_project.failures import job_failure_sensor
from dagster_project.repair import rollup_repair, rollup_repair_sensor
from dagster_project.resources import PostgresResource, RedisResource
from dagster_project.retention import retention, retention_schedule
from dagster_project.rollup import ROLLUP_SCHEDULES, TIER_ASSETS, rollup

defs = dg.Definitions(
    assets=TIER_ASSETS,
    jobs=[rollup, rollup_repair, retention],
    schedules=[*ROLLUP_SCHEDULES, retention_schedule],
    sensors=[rollup_repair_sensor, job_failure_sensor],
    # Each job is one op: running it in the run's own process saves a step subprocess
    # (a second Python start-up with Dagster and Vigil imported) every minute.
    executor=dg.in_process_executor,
    resources={
        "postgres": PostgresResource(),
        "redis": RedisResource(),
    },
)
