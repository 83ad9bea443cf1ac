"""The `retention` job and its daily schedule: each tier's chunks past its window are
dropped whole (storage/retention.py)."""

# No `from __future__ import annotations`: Dagster reads op and sensor parameter types
# (config, resources) when it decorates them.

import time

import dagster as dg

from dagster_project.resources import PostgresResource
from storage.retention import apply_retention


@dg.op
def drop_expired_chunks(context: dg.OpExecutionContext, postgres: PostgresResource) -> None:
    """Apply every tier's retention, global and per-tenant overrides."""
    retention = postgres.maintenance().retention
    with postgres.connection() as conn:
        run = apply_retention(conn, retention, time.time_ns() // 1_000)
    for tier in run.tiers:
        preserved = sum(kept.rows for kept in tier.preserved)
        context.log.info(
            f"{tier.tier}: cutoff {tier.cutoff.isoformat()}, {len(tier.chunks_dropped)} chunks "
            f"dropped, {preserved} rows kept for overrides; retained twin: "
            f"{len(tier.retained_chunks_dropped)} chunks dropped, "
            f"{tier.retained_rows_expired} rows expired"
        )
    context.log.info(
        f"write ledger: cutoff {run.ledger.cutoff.isoformat()}, "
        f"{len(run.ledger.chunks_dropped)} chunks dropped"
    )


@dg.job(description="Drop raw and rollup chunks older than each tier's retention.")
def retention() -> None:
    drop_expired_chunks()


retention_schedule = dg.ScheduleDefinition(
    name="retention_schedule",
    cron_schedule="15 0 * * *",
    execution_timezone="UTC",
    job=retention,
    description="Apply retention daily at 00:15 UTC, after the 1d rollup.",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
