"""Retention against a database of its own: whole chunks past each window dropped and
nothing inside it; overrides keep matching metrics readable through the views."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql

from storage import tenants
from storage.database import connect
from storage.retention import (
    InvalidRetentionOverride,
    Preserved,
    RetentionDefaults,
    RetentionOverrideNotFound,
    RetentionRun,
    TierRetention,
    apply_retention,
    list_overrides,
    set_override,
    unset_override,
    validate_override,
)
from storage.timestamps import to_unix_us

# Not on any chunk boundary, so every tier has a chunk straddling its cutoff.
NOW = datetime(2025, 3, 1, 12, 34, 56, tzinfo=UTC)
DAY = timedelta(days=1)
DEFAULTS = RetentionDefaults({"raw": 2 * DAY, "1m": 14 * DAY, "1h": 90 * DAY, "1d": 730 * DAY})
LEDGER_WINDOW = 5 * DAY  # a tenant's out-of-order window, longer than raw retention


@pytest.fixture
def fresh(fresh_database_url: str) -> Iterator[psycopg.Connection]:
    with connect(fresh_database_url) as conn:
        yield conn


def run(conn: psycopg.Connection, now: datetime = NOW) -> RetentionRun:
    return apply_retention(conn, DEFAULTS, to_unix_us(now))


def tier_of(result: RetentionRun, tier: str) -> TierRetention:
    (found,) = [t for t in result.tiers if t.tier == tier]
    return found


def new_tenant(conn: psycopg.Connection, window: timedelta = timedelta(hours=2)) -> uuid.UUID:
    name = f"t-{uuid.uuid4().hex[:12]}"
    return tenants.create_tenant(conn, name, out_of_order_window=window).tenant.id


def new_series(conn: psycopg.Connection, tenant_id: uuid.UUID, metric: str) -> int:
    row = conn.execute(
        "INSERT INTO vigil.series (tenant_id, metric, labels, fingerprint, first_seen, last_seen) "
        "VALUES (%s, %s, '{}', %s, %s, %s) RETURNING id",
        (tenant_id, metric, os.urandom(16), NOW, NOW),
    ).fetchone()
    assert row is not None
    return int(row[0])


def insert(
    conn: psycopg.Connection,
    table: str,
    series_id: int,
    tenant_id: uuid.UUID,
    times: list[datetime],
) -> None:
    """Rows at `times` in a hot table (a sample, a rollup bucket or a ledger entry each)."""
    statement: sql.Composable
    if table == "samples_raw":
        statement = sql.SQL(
            "INSERT INTO vigil.samples_raw (time, series_id, value) "
            "SELECT t, %(series)s, 1 FROM unnest(%(times)s::timestamptz[]) AS t"
        )
    elif table == "write_ledger":
        statement = sql.SQL(
            "INSERT INTO vigil.write_ledger (batch_time, tenant_id, batch_key, samples) "
            "SELECT t, %(tenant)s, t::text, 1 FROM unnest(%(times)s::timestamptz[]) AS t"
        )
    else:
        statement = sql.SQL(
            "INSERT INTO {} (bucket, series_id, samples, sum, min, max, first_time, "
            "first_value, last_time, last_value, reset_correction, increase) "
            "SELECT t, %(series)s, 1, 1, 1, 1, t, 1, t, 1, 0, 0 "
            "FROM unnest(%(times)s::timestamptz[]) AS t"
        ).format(sql.Identifier("vigil", table))
    conn.execute(statement, {"series": series_id, "tenant": tenant_id, "times": times})


@dataclass(frozen=True)
class Table:
    name: str
    time: str
    window: timedelta
    tier: str | None  # None: the write ledger


TABLES = [
    Table("samples_raw", "time", DEFAULTS.of("raw"), "raw"),
    Table("rollup_1m", "bucket", DEFAULTS.of("1m"), "1m"),
    Table("rollup_1h", "bucket", DEFAULTS.of("1h"), "1h"),
    Table("rollup_1d", "bucket", DEFAULTS.of("1d"), "1d"),
    Table("write_ledger", "batch_time", LEDGER_WINDOW, None),
]


def chunks(conn: psycopg.Connection, table: str) -> dict[str, tuple[datetime, datetime]]:
    rows = conn.execute(
        "SELECT chunk_schema || '.' || chunk_name, range_start, range_end "
        "FROM timescaledb_information.chunks "
        "WHERE hypertable_schema = 'vigil' AND hypertable_name = %s",
        (table,),
    )
    return {name: (start, end) for name, start, end in rows}


def times_in(conn: psycopg.Connection, table: str, time: str) -> list[datetime]:
    statement = sql.SQL("SELECT {time} FROM {table} ORDER BY 1").format(
        time=sql.Identifier(time), table=sql.Identifier("vigil", table)
    )
    return [t for (t,) in conn.execute(statement)]


def test_whole_chunks_past_each_window_are_dropped_and_nothing_inside_it(
    fresh: psycopg.Connection,
) -> None:
    tenant_id = new_tenant(fresh, window=LEDGER_WINDOW)
    series_id = new_series(fresh, tenant_id, "cpu_seconds_total")
    written = {}
    for table in TABLES:
        cutoff = NOW - table.window
        # Rows every quarter window from two windows back to just inside `now`, and
        # one microsecond either side of the cutoff.
        step = table.window / 4
        times = [cutoff + k * step for k in range(-8, 4)]
        times += [cutoff - timedelta(microseconds=1), cutoff + timedelta(microseconds=1)]
        insert(fresh, table.name, series_id, tenant_id, times)
        written[table.name] = sorted(times)
    before = {table.name: chunks(fresh, table.name) for table in TABLES}

    result = run(fresh)

    for table in TABLES:
        cutoff = NOW - table.window
        past = {name for name, (_, end) in before[table.name].items() if end <= cutoff}
        inside = {name for name, (_, end) in before[table.name].items() if end > cutoff}
        reported = result.ledger if table.tier is None else tier_of(result, table.tier)
        assert reported.cutoff == cutoff
        assert len(past) >= 2 and set(reported.chunks_dropped) == past, table.name
        assert set(chunks(fresh, table.name)) == inside, table.name
        # The chunk holding the cutoff stays whole: rows inside the window all remain,
        # and so do the older rows that share its chunk.
        kept_from = min(start for start, _ in chunks(fresh, table.name).values())
        assert kept_from < cutoff, table.name
        expected = [t for t in written[table.name] if t >= kept_from]
        assert times_in(fresh, table.name, table.time) == expected, table.name
        assert any(t < cutoff for t in expected), table.name


@dataclass(frozen=True)
class Fleet:
    a: uuid.UUID
    b: uuid.UUID
    a_billing: int
    a_lookalike: int
    a_cpu: int
    b_billing: int


RAW_AGES = [timedelta(hours=1), 3 * DAY, 7 * DAY, 20 * DAY, 40 * DAY]
HOURLY_AGES = [DAY, 100 * DAY, 200 * DAY, 400 * DAY]


@pytest.fixture
def fleet(fresh: psycopg.Connection) -> Fleet:
    """Tenant A keeps billing_* raw 30 days (and billing_requests 10) and hourly 365
    days; tenant B has the same metric and no override. `billingxrequests` would match
    billing_* only if `_` were a wildcard."""
    a, b = new_tenant(fresh), new_tenant(fresh)
    fleet = Fleet(
        a=a,
        b=b,
        a_billing=new_series(fresh, a, "billing_requests"),
        a_lookalike=new_series(fresh, a, "billingxrequests"),
        a_cpu=new_series(fresh, a, "cpu_seconds_total"),
        b_billing=new_series(fresh, b, "billing_requests"),
    )
    for series in (fleet.a_billing, fleet.a_lookalike, fleet.a_cpu, fleet.b_billing):
        insert(fresh, "samples_raw", series, a, [NOW - age for age in RAW_AGES])
        insert(fresh, "rollup_1h", series, a, [NOW - age for age in HOURLY_AGES])
    set_override(fresh, a, "raw", "billing_*", 30 * DAY, DEFAULTS)
    set_override(fresh, a, "raw", "billing_requests", 10 * DAY, DEFAULTS)
    set_override(fresh, a, "1h", "billing_*", 365 * DAY, DEFAULTS)
    return fleet


def visible(conn: psycopg.Connection, view: str, series_id: int, now: datetime) -> list[timedelta]:
    """The ages, as of `now`, of a series' rows read through a reader's view."""
    column = "time" if view == "samples" else "bucket"
    statement = sql.SQL("SELECT {c} FROM {v} WHERE series_id = %s ORDER BY 1 DESC").format(
        c=sql.Identifier(column), v=sql.Identifier("vigil", view)
    )
    return [now - t for (t,) in conn.execute(statement, (series_id,))]


def test_overrides_keep_matching_metrics_readable_and_nothing_else(
    fresh: psycopg.Connection, fleet: Fleet
) -> None:
    result = run(fresh)

    assert visible(fresh, "samples", fleet.a_billing, NOW) == RAW_AGES[:4]
    assert visible(fresh, "rollups_1h", fleet.a_billing, NOW) == HOURLY_AGES[:3]
    for other in (fleet.a_lookalike, fleet.a_cpu, fleet.b_billing):
        assert visible(fresh, "samples", other, NOW) == RAW_AGES[:1]
        assert visible(fresh, "rollups_1h", other, NOW) == HOURLY_AGES[:1]
    # The longest matching override kept the series, and the run says so.
    assert tier_of(result, "raw").preserved == (Preserved(fleet.a, "billing_*", 30 * DAY, 3),)
    assert tier_of(result, "1h").preserved == (Preserved(fleet.a, "billing_*", 365 * DAY, 2),)
    assert tier_of(result, "1m").preserved == ()
    # The hot tables lost their old chunks whole: only the twins hold the kept rows.
    raw_times = times_in(fresh, "samples_raw", "time")
    assert min(raw_times) > NOW - DEFAULTS.of("raw") - timedelta(hours=2)

    again = run(fresh)
    assert visible(fresh, "samples", fleet.a_billing, NOW) == RAW_AGES[:4]
    assert visible(fresh, "rollups_1h", fleet.a_billing, NOW) == HOURLY_AGES[:3]
    assert all(t.preserved == () and t.retained_rows_expired == 0 for t in again.tiers)


def test_retained_rows_expire_with_their_override(fresh: psycopg.Connection, fleet: Fleet) -> None:
    run(fresh)
    later = NOW + 15 * DAY

    expired = tier_of(run(fresh, later), "raw")
    # Each age grows by 15 days: the 20-day sample is now 35 days old and past 30.
    assert visible(fresh, "samples", fleet.a_billing, later) == [
        age + 15 * DAY for age in RAW_AGES[:3]
    ]
    assert visible(fresh, "samples", fleet.a_cpu, later) == []
    assert expired.retained_rows_expired + len(expired.retained_chunks_dropped) > 0

    # Without billing_*, billing_requests' own 10 days apply: all of it is older.
    unset_override(fresh, fleet.a, "raw", "billing_*")
    run(fresh, later)
    assert visible(fresh, "samples", fleet.a_billing, later) == []
    assert visible(fresh, "rollups_1h", fleet.a_billing, later) == [
        age + 15 * DAY for age in HOURLY_AGES[:3]
    ]


def test_overrides_belong_to_their_tenant(fresh: psycopg.Connection, fleet: Fleet) -> None:
    assert [(o.tier, o.pattern) for o in list_overrides(fresh, fleet.a)] == [
        ("raw", "billing_*"),
        ("raw", "billing_requests"),
        ("1h", "billing_*"),
    ]
    assert list_overrides(fresh, fleet.b) == []
    with pytest.raises(RetentionOverrideNotFound):
        unset_override(fresh, fleet.b, "raw", "billing_*")
    assert len(list_overrides(fresh, fleet.a)) == 3


def test_setting_an_override_again_replaces_it(fresh: psycopg.Connection, fleet: Fleet) -> None:
    replaced = set_override(fresh, fleet.a, "raw", "billing_*", 60 * DAY, DEFAULTS)
    assert replaced.retention == 60 * DAY
    assert [o.retention for o in list_overrides(fresh, fleet.a) if o.pattern == "billing_*"] == [
        60 * DAY,
        365 * DAY,
    ]


@pytest.mark.parametrize(
    ("tier", "pattern", "retention", "message"),
    [
        ("5m", "billing_*", 30 * DAY, "unknown tier '5m'"),
        ("raw", "billing-*", 30 * DAY, "invalid metric pattern 'billing-*'"),
        ("raw", "", 30 * DAY, "invalid metric pattern ''"),
        ("raw", "billing_%", 30 * DAY, "invalid metric pattern"),
        ("raw", "billing_*", DAY, "not longer than its global 2d"),
        ("1h", "billing_*", 90 * DAY, "not longer than its global 90d"),
        ("1d", "billing_*", 4000 * DAY, "longer than the most Vigil keeps"),
    ],
)
def test_unenforceable_overrides_are_refused(
    tier: str, pattern: str, retention: timedelta, message: str
) -> None:
    with pytest.raises(InvalidRetentionOverride, match=re.escape(message)):
        validate_override(tier, pattern, retention, DEFAULTS)


def test_shorter_overrides_are_refused_with_the_reason() -> None:
    with pytest.raises(InvalidRetentionOverride) as refused:
        validate_override("raw", "debug_*", timedelta(hours=6), DEFAULTS)
    assert "whole chunks" in str(refused.value)


def test_a_source_is_kept_until_the_tier_built_from_it_has_caught_up(
    fresh: psycopg.Connection,
) -> None:
    """Rollups stopped for days (the orchestrator down): raw chunks past the raw window
    stay until the 1m tier has been built past them, so nothing is lost unrolled."""
    tenant_id = new_tenant(fresh)
    series_id = new_series(fresh, tenant_id, "cpu_seconds_total")
    insert(fresh, "samples_raw", series_id, tenant_id, [NOW - k * DAY for k in range(1, 8)])
    built = NOW - 5 * DAY
    fresh.execute(
        "UPDATE vigil.rollup_watermark SET claimed_to = %s, materialised_to = %s WHERE tier = '1m'",
        (built, built),
    )

    raw = tier_of(run(fresh), "raw")

    assert raw.held_back and raw.cutoff == built
    kept = times_in(fresh, "samples_raw", "time")
    assert all(t in kept for t in (NOW - k * DAY for k in range(1, 5)))  # not yet rolled up
    assert NOW - 7 * DAY not in kept  # rolled up and past the window: dropped
