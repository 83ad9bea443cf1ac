"""The `rollup_repair` job and the sensor that runs it while late data waits in the
invalidation log (`vigil.rollup_dirty`)."""

# No `from __future__ import annotations`: Dagster reads op and sensor parameter types
# (config, resources) when it decorates them.

import dagster as dg

from dagster_project.resources import PostgresResource, RedisResource
from storage import rollups
from storage.repair import repair_and_invalidate
from storage.tiers import ROLLUP_TIER_NAMES

# A repair run in one of these states makes the sensor wait rather than request another.
_IN_FLIGHT = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


@dg.op
def repair_rollups(
    context: dg.OpExecutionContext, postgres: PostgresResource, redis: RedisResource
) -> None:
    """Recompute batches of dirty buckets in every tier and drop stale cached results."""
    maintenance = postgres.maintenance()
    with postgres.connection() as conn:
        repair = repair_and_invalidate(
            conn,
            redis.results_cache(),
            maintenance.repair_batch,
            maintenance.repair_batches_per_run,
        )
    context.log.info(
        f"repaired {len(repair.buckets)} dirty 1m buckets ({repair.rows} tier rows "
        f"rewritten); {len(repair.invalidations)} cached ranges invalidated"
    )
    if repair.buckets:
        for tier in ROLLUP_TIER_NAMES:
            context.log_event(
                dg.AssetObservation(
                    f"rollup_{tier}",
                    metadata={"late buckets repaired": dg.MetadataValue.int(len(repair.buckets))},
                )
            )


@dg.job(description="Recompute the rollup buckets late samples landed in, in every tier.")
def rollup_repair() -> None:
    repair_rollups()


@dg.sensor(
    job=rollup_repair,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Request a repair run while the invalidation log holds dirty buckets.",
)
def rollup_repair_sensor(
    context: dg.SensorEvaluationContext, postgres: PostgresResource
) -> dg.RunRequest | dg.SkipReason:
    """A repair run when buckets are dirty and no repair run is queued or running."""
    in_flight = context.instance.get_runs(
        filters=dg.RunsFilter(job_name=rollup_repair.name, statuses=_IN_FLIGHT), limit=1
    )
    if in_flight:
        return dg.SkipReason(f"repair run {in_flight[0].run_id} is {in_flight[0].status.value}")
    with postgres.connection() as conn:
        dirty = rollups.dirty_count(conn)
    if dirty == 0:
        return dg.SkipReason("no dirty buckets")
    return dg.RunRequest(tags={"vigil/dirty_buckets": str(dirty)})
