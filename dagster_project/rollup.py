"""The `rollup` job and its three schedules: one job, configured with the tier to build.

Tiers are plain jobs driven by each tier's watermark, not time-partitioned assets.
Partitions would let the UI show every bucket's state, but 1m partitions are 525,600
a year in Dagster's event log and run storage, and the watermark already makes a run
self-healing: a missed or failed run leaves its buckets to the next, which builds
every closed bucket past the watermark (up to `rollup.max_buckets_per_run`). Late
data is the repair job's (repair.py), not a partition re-run. The UI shows each
tier's freshness instead: every run reports the asset `rollup_<tier>` with its
watermark, materialised when buckets were built, observed when none were due.
"""

# No `from __future__ import annotations`: Dagster reads op and sensor parameter types
# (config, resources) when it decorates them.

import time

import dagster as dg
from pydantic import Field

from dagster_project.resources import PostgresResource
from storage import rollups
from storage.tiers import ROLLUP_TIER_NAMES, RollupTierName
from storage.timestamps import to_datetime

TIER_ASSETS = [
    dg.AssetSpec(
        f"rollup_{tier}",
        description=f"The {tier} rollup tier (vigil.rollup_{tier}), built by the rollup job; "
        "its watermark says up to where.",
        group_name="rollups",
    )
    for tier in ROLLUP_TIER_NAMES
]


class RollupConfig(dg.Config):
    """Which tier a rollup run builds."""

    tier: RollupTierName = Field(description="1m from raw, 1h from 1m, 1d from 1h.")


def _moment(time_us: int | None) -> str:
    return "none" if time_us is None else to_datetime(time_us).isoformat()


def _metadata(time_us: int | None) -> dict[str, dg.MetadataValue]:
    if time_us is None:
        return {}
    return {"watermark": dg.MetadataValue.timestamp(to_datetime(time_us))}


@dg.op
def materialise_tier(
    context: dg.OpExecutionContext, config: RollupConfig, postgres: PostgresResource
) -> None:
    """Build the tier's closed buckets past its watermark."""
    maintenance = postgres.maintenance()
    with postgres.connection() as conn:
        run = rollups.materialise(
            conn,
            config.tier,
            now_us=time.time_ns() // 1_000,
            settle_us=maintenance.settle_us,
            max_buckets=maintenance.max_buckets_per_run,
        )
        watermark = rollups.read_watermarks(conn)[config.tier].materialised_to_us
    asset = f"rollup_{config.tier}"
    if run.end_us > run.start_us:
        context.log.info(
            f"{config.tier}: materialised buckets ending in ({_moment(run.start_us)}, "
            f"{_moment(run.end_us)}], {run.rows} rows; watermark {_moment(watermark)}"
        )
        context.log_event(
            dg.AssetMaterialization(
                asset,
                metadata={
                    **_metadata(watermark),
                    "from": dg.MetadataValue.timestamp(to_datetime(run.start_us)),
                    "to": dg.MetadataValue.timestamp(to_datetime(run.end_us)),
                    "rows": dg.MetadataValue.int(run.rows),
                },
            )
        )
    else:
        context.log.info(f"{config.tier}: no closed bucket due; watermark {_moment(watermark)}")
        context.log_event(dg.AssetObservation(asset, metadata=_metadata(watermark)))


@dg.job(description="Materialise one rollup tier's closed buckets past its watermark.")
def rollup() -> None:
    materialise_tier()


def _schedule(tier: RollupTierName, cron: str, when: str) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name=f"rollup_{tier}_schedule",
        cron_schedule=cron,
        execution_timezone="UTC",
        job=rollup,
        run_config=dg.RunConfig(ops={"materialise_tier": RollupConfig(tier=tier)}),
        tags={"vigil/tier": tier},
        description=f"Build the {tier} tier {when}.",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )


# 1h and 1d run a little after their boundary, once the tier below has built it.
ROLLUP_SCHEDULES = [
    _schedule("1m", "* * * * *", "every minute"),
    _schedule("1h", "2 * * * *", "hourly at :02"),
    _schedule("1d", "5 0 * * *", "daily at 00:05 UTC"),
]
