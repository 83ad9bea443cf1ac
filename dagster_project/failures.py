"""The run-failure sensor: every failed run of this code location is logged and recorded
in `vigil.job_failure`, where meta-monitoring picks it up to report out of band."""

# No `from __future__ import annotations`: Dagster reads op and sensor parameter types
# (config, resources) when it decorates them.

import time

import dagster as dg

from dagster_project.resources import PostgresResource
from storage.job_failures import JobFailure, record_failure


@dg.run_failure_sensor(
    name="job_failure_sensor",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Log and record every failed run in vigil.job_failure.",
)
def job_failure_sensor(context: dg.RunFailureSensorContext, postgres: PostgresResource) -> None:
    """Log the failed run with its failed steps' errors, and record it."""
    run = context.dagster_run
    reasons = [context.failure_event.message or "run failed"]
    for step in context.get_step_failure_events():
        error = step.step_failure_data.error
        # Dagster wraps an op's exception; its cause is the op's own error.
        cause = (error.cause or error) if error else None
        reasons.append(f"{step.step_key}: {cause.message.strip() if cause else 'failed'}")
    message = "\n".join(reasons)
    context.log.error(f"run {run.run_id} of {run.job_name} failed: {message}")
    record = context.instance.get_run_record_by_id(run.run_id)
    failed_at_s = record.end_time if record is not None and record.end_time else time.time()
    with postgres.connection() as conn:
        record_failure(conn, JobFailure(run.run_id, run.job_name, message, int(failed_at_s * 1e6)))
