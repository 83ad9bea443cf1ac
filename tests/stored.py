"""What the database holds for a tenant, as tests check it."""

from __future__ import annotations

from uuid import UUID

import psycopg


def sample_count(conn: psycopg.Connection, tenant_id: UUID) -> int:
    """How many samples the tenant has in `vigil.samples`."""
    row = conn.execute(
        "SELECT count(*) FROM vigil.samples r JOIN vigil.series s ON s.id = r.series_id "
        "WHERE s.tenant_id = %s",
        (tenant_id,),
    ).fetchone()
    assert row is not None
    return int(row[0])
