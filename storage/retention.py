"""Retention: each tier drops whole chunks past its window; tenants' overrides keep
matching metrics longer in the tiers' retained twins.

Stored: `vigil.retention_override`, one row per (tenant, tier, metric-name glob) with
its retention (sql/0007_retention.sql). Only overrides LONGER than the tier's global
window are accepted.

Enforced, per tier, in one transaction: find the hot hypertable's chunks that
`drop_chunks(older_than => now - window)` drops; lock them against writes; copy the
rows of series whose tenant has an override of this tier matching the series' metric
(the longest one wins), and that the override still keeps, into the tier's twin
(`vigil.samples_retained`, `vigil.rollup_1m_retained`, ...); then `drop_chunks`. No
row of the hot tables is ever deleted. The twin then expires by `drop_chunks` beyond
the tier's longest override, and by row DELETE of what no override keeps any more
(expired, or the override was removed or shortened): the twin is cold and holds only
overridden metrics. The readers' views `vigil.samples` and `vigil.rollups_*` UNION
ALL the twin, so queries see retained data without knowing where it lives.

An override SHORTER than the global window is refused: a chunk holds every tenant's
rows for its time range, so dropping one tenant's data earlier would need row-by-row
DELETE on the hot tables (or a read filter that hides but keeps the data, which would
be a retention in name only). If an operator later raises a global window past an
override, the override simply has no effect; data lives max(global, override).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final
from uuid import UUID

import psycopg
from psycopg import sql

from storage import rollups
from storage.database import Pool
from storage.durations import format_duration, parse_duration
from storage.errors import StorageError
from storage.queries import query
from storage.tiers import ROLLUP_TIERS, TIER_NAMES
from storage.timestamps import to_datetime

MAX_RETENTION: Final = timedelta(days=3650)
MAX_OVERRIDES_PER_TENANT: Final = 100
# Prometheus metric-name characters, plus the glob's `*` (any run) and `?` (one).
_PATTERN = re.compile(r"[a-zA-Z_:*?][a-zA-Z0-9_:*?]{0,199}")
_LEDGER = "vigil.write_ledger"


class InvalidRetentionOverride(StorageError):
    """A retention override with an unknown tier, a bad pattern or an unenforceable duration."""


class RetentionOverrideNotFound(StorageError):
    """The tenant has no override for that tier and pattern."""


@dataclass(frozen=True)
class RetentionDefaults:
    """Each tier's global retention: how long every tenant's data is kept, unless an
    override keeps it longer."""

    windows: Mapping[str, timedelta]

    def __post_init__(self) -> None:
        if sorted(self.windows) != sorted(TIER_NAMES):
            raise ValueError(f"retention defaults need exactly the tiers {', '.join(TIER_NAMES)}")

    def of(self, tier: str) -> timedelta:
        """The retention of a tier by name: raw, 1m, 1h or 1d."""
        return self.windows[tier]


@dataclass(frozen=True)
class RetentionOverride:
    """A tenant's retention for one tier's metrics whose name matches a glob."""

    tier: str
    pattern: str
    retention: timedelta
    updated_at: datetime


@dataclass(frozen=True)
class Preserved:
    """Rows one override saved from a tier's dropped chunks into the twin."""

    tenant_id: UUID
    pattern: str
    retention: timedelta
    rows: int


@dataclass(frozen=True)
class TierRetention:
    """What one retention run did to one tier."""

    tier: str
    cutoff: datetime
    chunks_dropped: tuple[str, ...]
    preserved: tuple[Preserved, ...]
    held_back: bool
    """Whether the cutoff was moved back to the watermark of the tier built from this
    one, whose rollup has not caught up (its source is kept until it has)."""
    retained_chunks_dropped: tuple[str, ...]
    retained_rows_expired: int


@dataclass(frozen=True)
class LedgerRetention:
    """What one retention run did to the write ledger."""

    cutoff: datetime
    chunks_dropped: tuple[str, ...]


@dataclass(frozen=True)
class RetentionRun:
    """What one retention run did: per tier, then the write ledger."""

    tiers: tuple[TierRetention, ...]
    ledger: LedgerRetention


@dataclass(frozen=True)
class _Store:
    """A tier's hot hypertable, its retained twin, their time column and copy query."""

    tier: str
    hot: str
    twin: str
    time: str
    retain: str


_STORES: Final = (
    _Store("raw", "samples_raw", "samples_retained", "time", "retain_samples"),
    _Store("1m", "rollup_1m", "rollup_1m_retained", "bucket", "retain_rollups"),
    _Store("1h", "rollup_1h", "rollup_1h_retained", "bucket", "retain_rollups"),
    _Store("1d", "rollup_1d", "rollup_1d_retained", "bucket", "retain_rollups"),
)


def parse_retention(text: str) -> timedelta:
    """The duration of an override's retention, e.g. 30d or 12w."""
    try:
        return parse_duration(text)
    except ValueError:
        raise InvalidRetentionOverride(
            f"invalid retention {text!r}: use a duration like 30d, 12w or 1d12h"
        ) from None


def retention_text(value: timedelta) -> str:
    """A retention as people write it, in days when whole (30d, not 4w2d), e.g. 30d or 36h."""
    days, rest = divmod(value, timedelta(days=1))
    return f"{days}d" if not rest else format_duration(value)


def validate_override(
    tier: str, pattern: str, retention: timedelta, defaults: RetentionDefaults
) -> None:
    """Raise InvalidRetentionOverride unless the override can be stored and enforced."""
    if tier not in TIER_NAMES:
        raise InvalidRetentionOverride(f"unknown tier {tier!r}: use one of {', '.join(TIER_NAMES)}")
    if not _PATTERN.fullmatch(pattern):
        raise InvalidRetentionOverride(
            f"invalid metric pattern {pattern!r}: use metric-name characters (letters, "
            "digits, '_', ':'), '*' for any run of them and '?' for one, e.g. billing_*; "
            "at most 200 characters"
        )
    window = defaults.of(tier)
    if retention <= window:
        raise InvalidRetentionOverride(
            f"retention {retention_text(retention)} for tier {tier} is not longer than its "
            f"global {retention_text(window)}: an override can only keep data longer, because "
            "retention drops whole chunks that hold every tenant's data, and dropping one "
            "tenant's earlier would need row-by-row deletes on the hot tables"
        )
    if retention > MAX_RETENTION:
        raise InvalidRetentionOverride(
            f"retention {retention_text(retention)} is longer than the most Vigil keeps, "
            f"{retention_text(MAX_RETENTION)}"
        )


def list_overrides(conn: psycopg.Connection, tenant_id: UUID) -> list[RetentionOverride]:
    """A tenant's overrides, by tier (raw first) and pattern."""
    rows = conn.execute(query("select_retention_overrides"), {"tenant_id": tenant_id})
    return [RetentionOverride(*row) for row in rows]


def set_override(
    conn: psycopg.Connection,
    tenant_id: UUID,
    tier: str,
    pattern: str,
    retention: timedelta,
    defaults: RetentionDefaults,
) -> RetentionOverride:
    """Keep a tenant's metrics matching `pattern` in `tier` for `retention` (an upsert)."""
    validate_override(tier, pattern, retention, defaults)
    key = {"tenant_id": tenant_id, "tier": tier, "pattern": pattern}
    with conn.transaction():
        conn.execute(query("lock_tenant_retention_overrides"), key)
        count = conn.execute(query("count_retention_overrides"), key).fetchone()
        if count is not None and count[0] >= MAX_OVERRIDES_PER_TENANT:
            raise InvalidRetentionOverride(
                f"a tenant may have at most {MAX_OVERRIDES_PER_TENANT} retention overrides: "
                "remove one, or cover several metrics with one pattern"
            )
        row = conn.execute(
            query("upsert_retention_override"), {**key, "retention": retention}
        ).fetchone()
    assert row is not None, "an upsert returns its row"
    return RetentionOverride(*row)


def unset_override(conn: psycopg.Connection, tenant_id: UUID, tier: str, pattern: str) -> None:
    """Remove a tenant's override; its retained data expires on the next retention run."""
    removed = conn.execute(
        query("delete_retention_override"),
        {"tenant_id": tenant_id, "tier": tier, "pattern": pattern},
    ).fetchone()
    if removed is None:
        raise RetentionOverrideNotFound(f"no retention override for tier {tier!r} and {pattern!r}")


class RetentionOverrides:
    """Tenants' retention overrides over a connection pool, checked against the defaults."""

    def __init__(self, pool: Pool, defaults: RetentionDefaults) -> None:
        self._pool = pool
        self.defaults = defaults

    def of(self, tenant_id: UUID) -> list[RetentionOverride]:
        """A tenant's overrides."""
        with self._pool.connection() as conn:
            return list_overrides(conn, tenant_id)

    def set(
        self, tenant_id: UUID, tier: str, pattern: str, retention: timedelta
    ) -> RetentionOverride:
        """Set one of a tenant's overrides."""
        with self._pool.connection() as conn:
            return set_override(conn, tenant_id, tier, pattern, retention, self.defaults)

    def unset(self, tenant_id: UUID, tier: str, pattern: str) -> None:
        """Remove one of a tenant's overrides."""
        with self._pool.connection() as conn:
            unset_override(conn, tenant_id, tier, pattern)


def apply_retention(
    conn: psycopg.Connection, retention: RetentionDefaults, now_us: int
) -> RetentionRun:
    """Drop every tier's chunks past its window as of `now_us`, keeping what overrides keep
    in the twins, then the write ledger's chunks no replay can need any more."""
    now = to_datetime(now_us)
    built = rollups.read_watermarks(conn)
    tiers = tuple(
        _apply_tier(conn, store, retention.of(store.tier), now, _built_from(store.tier, built))
        for store in _STORES
    )
    return RetentionRun(tiers=tiers, ledger=_apply_ledger(conn, retention.of("raw"), now))


def _built_from(tier: str, watermarks: dict[str, rollups.Watermark]) -> datetime | None:
    """How far the tier built from `tier` is materialised (None: no such tier, or it has
    never run): data after that is still its source and must stay."""
    consumer = next((t for t in ROLLUP_TIERS.values() if t.source == tier), None)
    if consumer is None:
        return None
    built = watermarks[consumer.name].materialised_to_us
    return None if built is None else to_datetime(built)


def _statement(name: str, store: _Store) -> sql.Composed:
    return sql.SQL(query(name)).format(
        hot=sql.Identifier("vigil", store.hot),
        twin=sql.Identifier("vigil", store.twin),
        time=sql.Identifier(store.time),
        kept=sql.SQL(query("retained_series")),
    )


def _drop_chunks(conn: psycopg.Connection, relation: str, cutoff: datetime) -> tuple[str, ...]:
    rows = conn.execute(query("drop_chunks"), {"relation": relation, "cutoff": cutoff})
    return tuple(name for (name,) in rows)


def _apply_tier(
    conn: psycopg.Connection,
    store: _Store,
    window: timedelta,
    now: datetime,
    built_from: datetime | None,
) -> TierRetention:
    cutoff = now - window
    held_back = built_from is not None and built_from < cutoff
    if built_from is not None:
        cutoff = min(cutoff, built_from)
    hot = f"vigil.{store.hot}"
    kept = {"now": now, "tier": store.tier, "window": window}
    with conn.transaction():
        conn.execute(query("lock_retention"))
        doomed = conn.execute(
            query("doomed_chunks"), {"relation": hot, "cutoff": cutoff}
        ).fetchall()
        preserved: tuple[Preserved, ...] = ()
        if doomed:
            # Writers wait until the drop, so no row lands in a chunk after its copy.
            chunks = sql.SQL(", ").join(sql.Identifier(schema, name) for schema, name, _ in doomed)
            conn.execute(sql.SQL(query("lock_chunks")).format(chunks=chunks))
            boundary = doomed[-1][2]
            rows = conn.execute(_statement(store.retain, store), {**kept, "boundary": boundary})
            preserved = tuple(Preserved(*row) for row in rows)
        dropped = _drop_chunks(conn, hot, cutoff)
        longest_row = conn.execute(
            query("longest_retention_override"), {"tier": store.tier}
        ).fetchone()
        longest = max(window, (longest_row and longest_row[0]) or window)
        twin_dropped = _drop_chunks(conn, f"vigil.{store.twin}", now - longest)
        expired = conn.execute(_statement("expire_retained", store), {**kept, "cutoff": cutoff})
    return TierRetention(
        tier=store.tier,
        cutoff=cutoff,
        chunks_dropped=dropped,
        preserved=preserved,
        held_back=held_back,
        retained_chunks_dropped=twin_dropped,
        retained_rows_expired=expired.rowcount,
    )


def _apply_ledger(conn: psycopg.Connection, raw: timedelta, now: datetime) -> LedgerRetention:
    # A ledger entry matters while a replay of its batch could still be accepted: its
    # samples within raw retention and within the tenant's out-of-order window.
    with conn.transaction():
        conn.execute(query("lock_retention"))
        row = conn.execute(query("longest_out_of_order_window")).fetchone()
        cutoff = now - max(raw, row[0] if row else raw)
        return LedgerRetention(cutoff=cutoff, chunks_dropped=_drop_chunks(conn, _LEDGER, cutoff))
