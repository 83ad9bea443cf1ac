"""Late samples make the repair sensor ask for a run, the repair job clears them, and the
sensor waits while a repair run is in flight."""

from __future__ import annotations

import dagster as dg
import psycopg
import pytest

from dagster_project.repair import rollup_repair, rollup_repair_sensor
from dagster_project.resources import PostgresResource, RedisResource
from dagster_project.rollup import rollup
from storage import rollups, tenants
from tests.dagster_project.counter_samples import HOUR_US, MINUTE_US, write_samples


def tick(postgres: PostgresResource, instance: dg.DagsterInstance) -> dg.SensorExecutionData:
    with dg.build_sensor_context(instance=instance, resources={"postgres": postgres}) as context:
        return rollup_repair_sensor.evaluate_tick(context)


@pytest.fixture
def late_data(
    postgres: PostgresResource,
    db: psycopg.Connection,
    fresh_tenant: tenants.Tenant,
    midnight_us: int,
) -> int:
    """Samples rolled up into 1m, then one more minute's worth written behind the
    watermark; returns the dirty buckets."""
    write_samples(db, fresh_tenant, midnight_us - HOUR_US, midnight_us)
    result = rollup.execute_in_process(
        run_config={"ops": {"materialise_tier": {"config": {"tier": "1m"}}}},
        resources={"postgres": postgres},
    )
    assert result.success
    late_start = midnight_us - 30 * MINUTE_US + 7_000_000  # between the 15 s samples
    write_samples(db, fresh_tenant, late_start, late_start + MINUTE_US)
    dirty = rollups.dirty_count(db)
    assert dirty > 0
    return dirty


def test_the_sensor_skips_while_nothing_is_dirty(postgres: PostgresResource) -> None:
    with dg.DagsterInstance.ephemeral() as instance:
        data = tick(postgres, instance)
    assert not data.run_requests
    assert data.skip_message == "no dirty buckets"


def test_late_data_is_requested_repaired_and_cleared(
    postgres: PostgresResource,
    redis_resource: RedisResource,
    db: psycopg.Connection,
    late_data: int,
) -> None:
    with dg.DagsterInstance.ephemeral() as instance:
        data = tick(postgres, instance)
        assert data.run_requests is not None
        (request,) = data.run_requests
        assert request.tags["vigil/dirty_buckets"] == str(late_data)

        result = rollup_repair.execute_in_process(
            resources={"postgres": postgres, "redis": redis_resource}, instance=instance
        )
        assert result.success
        assert rollups.dirty_count(db) == 0
        assert tick(postgres, instance).skip_message == "no dirty buckets"
    observed = [event for event in result.all_events if event.is_asset_observation]
    assert {event.asset_key for event in observed} == {
        dg.AssetKey(f"rollup_{tier}") for tier in ("1m", "1h", "1d")
    }


def test_the_sensor_waits_for_a_repair_run_in_flight(
    postgres: PostgresResource, late_data: int
) -> None:
    with dg.DagsterInstance.ephemeral() as instance:
        run = instance.create_run_for_job(job_def=rollup_repair, status=dg.DagsterRunStatus.STARTED)
        data = tick(postgres, instance)
    assert not data.run_requests
    assert data.skip_message == f"repair run {run.run_id} is STARTED"
