"""The rollup job builds every tier in process against a real database, reporting each
tier's watermark as an asset event; its schedules ask for the right tier."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import psycopg
import pytest
from psycopg import sql

from dagster_project.resources import PostgresResource
from dagster_project.rollup import ROLLUP_SCHEDULES, rollup
from storage import rollups, tenants
from tests.dagster_project.counter_samples import HOUR_US, write_samples


def run_tier(postgres: PostgresResource, tier: str) -> dg.ExecuteInProcessResult:
    return rollup.execute_in_process(
        run_config={"ops": {"materialise_tier": {"config": {"tier": tier}}}},
        resources={"postgres": postgres},
    )


def rows_of(conn: psycopg.Connection, tier: str, tenant: tenants.Tenant) -> int:
    statement = sql.SQL(
        "SELECT count(*) FROM {} r JOIN vigil.series s ON s.id = r.series_id WHERE s.tenant_id = %s"
    ).format(sql.Identifier("vigil", f"rollup_{tier}"))
    row = conn.execute(statement, (tenant.id,)).fetchone()
    assert row is not None
    return int(row[0])


def test_each_tier_is_materialised_and_reported(
    postgres: PostgresResource,
    db: psycopg.Connection,
    fresh_tenant: tenants.Tenant,
    midnight_us: int,
) -> None:
    write_samples(db, fresh_tenant, midnight_us - 2 * HOUR_US, midnight_us + HOUR_US)
    for tier, buckets in (("1m", 180), ("1h", 3), ("1d", 1)):
        result = run_tier(postgres, tier)
        assert result.success
        watermark = rollups.read_watermarks(db)[tier].materialised_to_us
        assert watermark is not None and watermark >= midnight_us
        assert rows_of(db, tier, fresh_tenant) >= buckets
        (event,) = result.asset_materializations_for_node("materialise_tier")
        assert event.asset_key == dg.AssetKey(f"rollup_{tier}")
        assert event.metadata["watermark"] == dg.MetadataValue.timestamp(
            datetime.fromtimestamp(watermark / 1e6, UTC)
        )
        assert event.metadata["rows"] == dg.MetadataValue.int(rows_of(db, tier, fresh_tenant))


def test_a_tier_with_nothing_to_build_is_observed(
    postgres: PostgresResource, db: psycopg.Connection
) -> None:
    result = run_tier(postgres, "1d")  # an empty database: no 1h bucket to build from
    assert result.success
    assert result.asset_materializations_for_node("materialise_tier") == []
    observations = [
        event.asset_observation_data.asset_observation
        for event in result.all_events
        if event.is_asset_observation
    ]
    assert [observation.asset_key for observation in observations] == [dg.AssetKey("rollup_1d")]


def test_an_unknown_tier_is_refused_by_the_config_schema(postgres: PostgresResource) -> None:
    with pytest.raises(dg.DagsterInvalidConfigError):
        run_tier(postgres, "5m")


@pytest.mark.parametrize(
    ("tier", "cron"), [("1m", "* * * * *"), ("1h", "2 * * * *"), ("1d", "5 0 * * *")]
)
def test_each_schedule_runs_its_tier(tier: str, cron: str) -> None:
    (schedule,) = [s for s in ROLLUP_SCHEDULES if s.name == f"rollup_{tier}_schedule"]
    assert schedule.cron_schedule == cron
    tick = datetime(2026, 3, 1, 0, 5, tzinfo=UTC)
    data = schedule.evaluate_tick(dg.build_schedule_context(scheduled_execution_time=tick))
    assert data.run_requests is not None
    (request,) = data.run_requests
    assert request.run_config["ops"] == {"materialise_tier": {"config": {"tier": tier}}}
    assert request.tags["vigil/tier"] == tier
