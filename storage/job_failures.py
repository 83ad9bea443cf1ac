"""Failed background-job runs, recorded in the database for meta-monitoring to report."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from storage.queries import query
from storage.timestamps import to_datetime, to_unix_us


@dataclass(frozen=True)
class JobFailure:
    """One failed run of a job: which run, which job, why, and when (Unix µs)."""

    run_id: str
    job_name: str
    message: str
    failed_at_us: int


def record_failure(conn: psycopg.Connection, failure: JobFailure) -> None:
    """Record a failed run; recording the same run again keeps the first record."""
    conn.execute(
        query("insert_job_failure"),
        {
            "run_id": failure.run_id,
            "job_name": failure.job_name,
            "message": failure.message,
            "failed_at": to_datetime(failure.failed_at_us),
        },
    )


def recent_failures(conn: psycopg.Connection, limit: int = 100) -> list[JobFailure]:
    """The newest recorded failures first, at most `limit`."""
    return [
        JobFailure(run_id, job_name, message, to_unix_us(failed_at))
        for run_id, job_name, message, failed_at in conn.execute(
            query("select_job_failures"), {"limit": limit}
        )
    ]
