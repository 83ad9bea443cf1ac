"""A failed run is recorded in vigil.job_failure with its failed step's error, once."""

from __future__ import annotations

import dagster as dg
import psycopg

from dagster_project.failures import job_failure_sensor
from dagster_project.resources import PostgresResource
from storage.job_failures import recent_failures


@dg.op
def break_down() -> None:
    raise RuntimeError("the disk is full")


@dg.job
def doomed() -> None:
    break_down()


def test_a_failed_run_is_recorded_once(postgres: PostgresResource, db: psycopg.Connection) -> None:
    with dg.DagsterInstance.ephemeral() as instance:
        result = doomed.execute_in_process(instance=instance, raise_on_error=False)
        assert not result.success
        with dg.build_run_status_sensor_context(
            sensor_name=job_failure_sensor.name,
            dagster_event=result.get_run_failure_event(),
            dagster_instance=instance,
            dagster_run=result.dagster_run,
            resources={"postgres": postgres},
        ) as context:
            job_failure_sensor(context.for_run_failure())
            job_failure_sensor(context.for_run_failure())  # a tick seeing it again

    (failure,) = recent_failures(db)
    assert failure.run_id == result.run_id
    assert failure.job_name == "doomed"
    assert "break_down: RuntimeError: the disk is full" in failure.message
    assert failure.failed_at_us > 0
