"""The SQL console against the real database, with the guard bypassed on purpose.

Every statement here goes to the database as written: these tests prove the second
wall of `/v1/sql` (reader role, row-level security on a signed tenant claim,
read-only transaction, timeout, cursor) holds even for SQL the guard would refuse.
Tenant B attacks tenant A; each attack is refused by the database or sees only B.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest

from storage import tenants
from storage.database import connect
from storage.errors import DatabaseUnavailable
from storage.samples import SampleBatch, SampleWriter, SeriesSamples
from storage.series import SeriesCatalog, SeriesKey
from storage.sql_console import (
    READER_ROLE,
    SqlConsole,
    SqlDataError,
    SqlInvalid,
    SqlResourceLimit,
    SqlTimeout,
    reader_url,
)

NOW_US = 1_790_000_000_000_000  # a fixed instant: tests never read the clock
STEP_US = 5 * 60_000_000  # 60 samples 5 minutes apart span 5 h: several 2 h chunks
SAMPLES_PER_SERIES = 60
A_SECRET = "a-secret-token"


@dataclass(frozen=True)
class TwoTenants:
    """Tenant A (the victim) and tenant B (the attacker), with their series ids."""

    a: tenants.Tenant
    b: tenants.Tenant
    a_series: list[int]
    b_series: list[int]

    @property
    def b_samples(self) -> int:
        return len(self.b_series) * SAMPLES_PER_SERIES


def write_series(tenant: tenants.Tenant, keys: list[SeriesKey], database_url: str) -> list[int]:
    """Write SAMPLES_PER_SERIES samples for each key; the tenant's series ids."""
    times = NOW_US + np.arange(SAMPLES_PER_SERIES, dtype=np.int64) * STEP_US
    parts = [
        SeriesSamples(key, times, np.arange(SAMPLES_PER_SERIES, dtype=np.float64) * (n + 1))
        for n, key in enumerate(keys)
    ]
    with connect(database_url) as conn:
        SampleWriter(SeriesCatalog()).write(
            conn, SampleBatch(key=f"sql-{uuid.uuid4()}", tenant_id=tenant.id, series=parts)
        )
        rows = conn.execute(
            "SELECT id FROM vigil.series WHERE tenant_id = %s ORDER BY id", (tenant.id,)
        ).fetchall()
    return [row[0] for row in rows]


@pytest.fixture(scope="module")
def two(database_url: str) -> TwoTenants:
    with connect(database_url) as conn:
        a = tenants.create_tenant(conn, f"sql-a-{uuid.uuid4().hex[:12]}").tenant
        b = tenants.create_tenant(conn, f"sql-b-{uuid.uuid4().hex[:12]}").tenant
    a_keys = [SeriesKey.of("a_secret_metric", {"host": f"a{n}", "token": A_SECRET}) for n in (1, 2)]
    b_keys = [
        SeriesKey.of("cpu", {"host": "b1"}),
        SeriesKey.of("cpu", {"host": "b2"}),
        SeriesKey.of("mem", {"host": "b1"}),
    ]
    return TwoTenants(
        a, b, write_series(a, a_keys, database_url), write_series(b, b_keys, database_url)
    )


def make_console(
    database_url: str,
    *,
    row_limit: int = 1000,
    timeout: timedelta = timedelta(seconds=5),
    max_connections: int = 4,
    wait: timedelta = timedelta(seconds=10),
) -> SqlConsole:
    return SqlConsole(
        database_url,
        reader_url(database_url),
        row_limit=row_limit,
        timeout=timeout,
        max_connections=max_connections,
        wait=wait,
    )


@pytest.fixture(scope="module")
def console(database_url: str) -> Iterator[SqlConsole]:
    found = make_console(database_url)
    yield found
    found.close()


def leaked(rows: object, two: TwoTenants) -> bool:
    """Whether anything of tenant A shows in a result."""
    text = repr(rows)
    return "a_secret" in text or A_SECRET in text or str(two.a.id) in text


def claim(database_url: str, tenant_id: uuid.UUID) -> str:
    """The tenant's real claim, computed here from the key as the console does."""
    with connect(database_url) as conn:
        row = conn.execute("SELECT key FROM vigil.sql_tenant_key").fetchone()
    assert row is not None
    return f"{tenant_id}:{hashlib.sha256(bytes(row[0]) + str(tenant_id).encode()).hexdigest()}"


def test_each_tenant_sees_only_its_own_rows(console: SqlConsole, two: TwoTenants) -> None:
    for tenant, series in ((two.a, two.a_series), (two.b, two.b_series)):
        found = console.run(tenant.id, "SELECT id FROM query.series ORDER BY id")
        assert [row[0] for row in found.rows] == series
        counted = console.run(tenant.id, "SELECT series_id, count(*) FROM query.samples GROUP BY 1")
        assert dict(counted.rows) == dict.fromkeys(series, SAMPLES_PER_SERIES)


def test_row_level_security_holds_in_every_chunk(
    console: SqlConsole, two: TwoTenants, database_url: str
) -> None:
    """TimescaleDB 2.19 applies the hypertable's policy to each chunk it reads."""
    with connect(database_url) as conn:
        chunks = conn.execute(
            "SELECT count(DISTINCT tableoid) FROM vigil.samples_raw WHERE series_id = ANY(%s)",
            (two.b_series,),
        ).fetchone()
    assert chunks is not None and chunks[0] >= 3
    found = console.run(
        two.b.id, "SELECT date_trunc('hour', time), count(*) FROM query.samples GROUP BY 1"
    )
    assert len(found.rows) >= 5
    assert sum(int(count) for _, count in found.rows) == two.b_samples


def test_the_owner_is_neither_filtered_nor_refused(two: TwoTenants, database_url: str) -> None:
    with connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM vigil.samples WHERE series_id = ANY(%s)",
            (two.a_series + two.b_series,),
        ).fetchone()
    assert row == ((len(two.a_series) + len(two.b_series)) * SAMPLES_PER_SERIES,)


# Statements that run, and must show tenant B nothing of tenant A. `{a}` is A's id,
# `{a_series}` one of A's series ids (ids are sequential: guessing them is easy).
FILTERED = [
    pytest.param("SELECT * FROM query.series", id="series"),
    pytest.param("TABLE query.samples", id="table"),
    pytest.param("SELECT * FROM query.samples WHERE series_id = {a_series}", id="guessed-id"),
    pytest.param("SELECT * FROM query.series WHERE id = {a_series}", id="guessed-series"),
    # Forged claims, set before the views are scanned (outer row of a nested loop).
    pytest.param(
        "SELECT s.* FROM (SELECT set_config('vigil.sql_tenant', '{a}', true)) AS f, "
        "LATERAL (SELECT * FROM query.series OFFSET 0) AS s",
        id="claim-bare-uuid",
    ),
    pytest.param(
        "SELECT s.* FROM (SELECT set_config('vigil.sql_tenant', '{a}:' || repeat('0', 64), true))"
        " AS f, LATERAL (SELECT * FROM query.samples OFFSET 0) AS s",
        id="claim-zero-digest",
    ),
    pytest.param(
        "SELECT s.* FROM (SELECT set_config('vigil.sql_tenant', '{a}:' || "
        "split_part(current_setting('vigil.sql_tenant'), ':', 2), true)) AS f, "
        "LATERAL (SELECT * FROM query.series OFFSET 0) AS s",
        id="claim-own-digest",
    ),
    pytest.param(
        "SELECT s.* FROM (SELECT set_config('vigil.sql_tenant', upper('{a}') || ':' || "
        "split_part(current_setting('vigil.sql_tenant'), ':', 2), false)) AS f, "
        "LATERAL (SELECT * FROM query.series OFFSET 0) AS s",
        id="claim-session-level",
    ),
    pytest.param(
        "SELECT set_config('row_security', 'off', true), * FROM query.series", id="row-security"
    ),
    pytest.param(
        "SELECT query_to_xml('SELECT * FROM query.series', true, false, '')::text",
        id="query-to-xml",
    ),
    pytest.param("SELECT table_to_xml('query.samples', true, false, '')::text", id="table-to-xml"),
    pytest.param("SELECT count(*) FROM pg_stats WHERE schemaname = 'vigil'", id="pg-stats"),
    pytest.param("SELECT vigil.sql_tenant()", id="claim-check"),
    pytest.param(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_schema IN ('vigil', 'query')",
        id="information-schema",
    ),
]


@pytest.mark.parametrize("statement", FILTERED)
def test_the_database_shows_b_nothing_of_a(
    console: SqlConsole, two: TwoTenants, statement: str
) -> None:
    found = console.run(two.b.id, statement.format(a=two.a.id, a_series=two.a_series[0]))
    assert not leaked(found.rows, two)


def test_the_claim_is_the_only_barrier(
    console: SqlConsole, two: TwoTenants, database_url: str
) -> None:
    """The forged-claim attacks run their set_config before the policy reads the claim:
    with A's real claim (which needs the key) the same statement shows A's rows."""
    statement = (
        "SELECT s.metric FROM (SELECT set_config('vigil.sql_tenant', '{claim}', true)) AS f, "
        "LATERAL (SELECT * FROM query.series OFFSET 0) AS s"
    )
    found = console.run(two.b.id, statement.format(claim=claim(database_url, two.a.id)))
    assert {row[0] for row in found.rows} == {"a_secret_metric"}


def test_the_leaky_predicate_sees_only_b(console: SqlConsole, two: TwoTenants) -> None:
    """A's rows never reach the tenant's own predicate: dividing by zero on them would
    reveal that they exist (the policy is evaluated first, as a security barrier)."""
    found = console.run(
        two.b.id,
        f"SELECT count(*) FROM query.samples WHERE 1 / (series_id - {two.a_series[0]}) IS NOT NULL",
    )
    assert found.rows == [(two.b_samples,)]


# Statements the database itself refuses, and the words it refuses them with.
REFUSED = [
    *[
        pytest.param(
            f"SELECT * FROM vigil.{table}",
            f"permission denied for (table|view) {table}",
            id=f"vigil-{table}",
        )
        for table in (
            "series",
            "samples_raw",
            "samples",
            "tenant",
            "api_key",
            "sql_tenant_key",
            "write_ledger",
        )
    ],
    pytest.param('SELECT * FROM "vigil"."series"', "permission denied for table", id="quoted"),
    pytest.param(
        'SELECT * FROM U&"\\0076igil".series', "permission denied for table", id="unicode-escape"
    ),
    pytest.param(
        "SELECT nextval('vigil.series_id_seq')", "permission denied for sequence", id="sequence"
    ),
    pytest.param(
        "SELECT 1; SELECT set_config('vigil.sql_tenant', '{a}', false)",
        "cannot insert multiple commands",
        id="two-statements",
    ),
    pytest.param("SET vigil.sql_tenant = '{a}'", "syntax error", id="set"),
    pytest.param("SET ROLE vigil", "syntax error", id="set-role"),
    pytest.param("RESET ROLE", "syntax error", id="reset-role"),
    pytest.param("SET SESSION AUTHORIZATION vigil", "syntax error", id="session-auth"),
    pytest.param(
        "SELECT set_config('role', 'vigil', true)", "permission denied to set role", id="role"
    ),
    pytest.param(
        "SELECT set_config('role', 'vigil_sql_views', true)",
        "permission denied to set role",
        id="role-views",
    ),
    pytest.param(
        "SELECT set_config('session_authorization', 'vigil', true)",
        "permission denied to set session authorization",
        id="session-auth-config",
    ),
    pytest.param(
        "WITH gone AS (DELETE FROM query.samples RETURNING *) SELECT * FROM gone",
        "must not contain data-modifying statements",
        id="delete-cte",
    ),
    pytest.param("SELECT * INTO stolen FROM query.series", "INTO is not allowed", id="into"),
    pytest.param("SELECT * FROM query.series FOR UPDATE", "permission denied", id="for-update"),
    pytest.param("EXPLAIN SELECT * FROM query.series", "syntax error", id="explain"),
    pytest.param("COPY (SELECT * FROM query.series) TO STDOUT", "syntax error", id="copy"),
    pytest.param("CREATE TEMP TABLE t (x int)", "syntax error", id="create"),
    pytest.param("SELECT pg_read_file('/etc/passwd')", "permission denied", id="read-file"),
    pytest.param("SELECT pg_read_binary_file('/etc/passwd')", "permission denied", id="read-bin"),
    pytest.param("SELECT pg_ls_dir('.')", "permission denied", id="ls-dir"),
    pytest.param("SELECT lo_import('/etc/passwd')", "permission denied", id="lo-import"),
    pytest.param("SELECT lo_create(0)", "permission denied", id="lo-create"),
    pytest.param("SELECT lo_from_bytea(0, '\\x00')", "permission denied", id="lo-from-bytea"),
    pytest.param("SELECT dblink('dbname=vigil', 'SELECT 1')", "does not exist", id="dblink"),
    pytest.param(
        "SELECT query_to_xml('SELECT * FROM vigil.series', true, false, '')",
        "permission denied for table series",
        id="query-to-xml-vigil",
    ),
    pytest.param(
        "SELECT pg_cancel_backend(pg_backend_pid())", "permission denied", id="cancel-backend"
    ),
    pytest.param(
        "SELECT pg_terminate_backend(pg_backend_pid())", "permission denied", id="terminate"
    ),
]


@pytest.mark.parametrize(("statement", "message"), REFUSED)
def test_the_database_refuses(
    console: SqlConsole, two: TwoTenants, statement: str, message: str
) -> None:
    with pytest.raises(SqlInvalid, match=message):
        console.run(two.b.id, statement.format(a=two.a.id))


def test_chunks_cannot_be_read_directly(
    console: SqlConsole, two: TwoTenants, database_url: str
) -> None:
    with connect(database_url) as conn:
        row = conn.execute(
            "SELECT format('%I.%I', chunk_schema, chunk_name) "
            "FROM timescaledb_information.chunks WHERE hypertable_name = 'samples_raw' LIMIT 1"
        ).fetchone()
    assert row is not None
    with pytest.raises(SqlInvalid, match="permission denied for table"):
        console.run(two.b.id, f"SELECT * FROM {row[0]}")


def test_the_reader_has_only_the_views(database_url: str) -> None:
    with connect(database_url) as conn:
        attributes = conn.execute(
            "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, rolreplication "
            "FROM pg_roles WHERE rolname = %s",
            (READER_ROLE,),
        ).fetchone()
        memberships = conn.execute(
            "SELECT count(*) FROM pg_auth_members WHERE member = %s::regrole", (READER_ROLE,)
        ).fetchone()
        grants = conn.execute(
            "SELECT table_schema, table_name, privilege_type "
            "FROM information_schema.role_table_grants WHERE grantee = %s ORDER BY 1, 2",
            (READER_ROLE,),
        ).fetchall()
        vigil_rights = conn.execute(
            "SELECT has_schema_privilege(%s, 'vigil', 'CREATE'), "
            "has_sequence_privilege(%s, 'vigil.series_id_seq', 'USAGE')",
            (READER_ROLE, READER_ROLE),
        ).fetchone()
    assert attributes == (False, False, False, False, False)
    assert memberships == (0,)
    assert grants == [("query", "samples", "SELECT"), ("query", "series", "SELECT")]
    assert vigil_rights == (False, False)


def test_statements_run_read_only_as_the_reader(console: SqlConsole, two: TwoTenants) -> None:
    found = console.run(
        two.b.id,
        "SELECT current_setting('transaction_read_only'), current_user, session_user, "
        "current_setting('track_activities')",
    )
    assert found.rows == [("on", READER_ROLE, READER_ROLE, "off")]


def test_a_running_statement_is_invisible_to_other_tenants(
    database_url: str, two: TwoTenants
) -> None:
    """All tenants share the reader role, which would see its sessions' query text."""
    shared = make_console(database_url, max_connections=2)
    try:
        victim = threading.Thread(
            target=shared.run, args=(two.a.id, f"SELECT '{A_SECRET}', pg_sleep(1.5)")
        )
        victim.start()
        time.sleep(0.5)
        found = shared.run(
            two.b.id,
            "SELECT count(*), coalesce(string_agg(query, ' '), '') FROM pg_stat_activity "
            "WHERE usename = current_user",
        )
        victim.join()
    finally:
        shared.close()
    sessions, text = found.rows[0]
    assert sessions >= 2  # A's session is visible ...
    assert A_SECRET not in str(text)  # ... but not what it runs


def test_nothing_of_a_request_outlives_it_on_the_connection(
    database_url: str, two: TwoTenants
) -> None:
    single = make_console(database_url, max_connections=1)
    try:
        single.run(two.a.id, "SELECT set_config('application_name', 'a-secret-app', false)")
        single.run(
            two.a.id,
            "SELECT set_config('vigil.sql_tenant', current_setting('vigil.sql_tenant'), false)",
        )
        single.run(two.a.id, "SELECT pg_advisory_lock(4242)")
        for _ in range(6):  # psycopg would prepare a statement run 5 times
            single.run(two.a.id, "SELECT count(*) FROM query.series")
        found = single.run(
            two.b.id,
            "SELECT current_setting('application_name'), "
            "split_part(current_setting('vigil.sql_tenant'), ':', 1), "
            "(SELECT count(*) FROM pg_prepared_statements), "
            "(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory')",
        )
    finally:
        single.close()
    assert found.rows == [("", str(two.b.id), 0, 0)]


def test_rows_are_capped_and_truncation_reported(database_url: str, two: TwoTenants) -> None:
    capped = make_console(database_url, row_limit=5)
    try:
        more = capped.run(two.b.id, "SELECT * FROM query.samples")
        exact = capped.run(two.b.id, "SELECT * FROM query.samples LIMIT 5")
    finally:
        capped.close()
    assert (len(more.rows), more.truncated) == (5, True)
    assert (len(exact.rows), exact.truncated) == (5, False)


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT pg_sleep(5)",
        "SELECT count(*) FROM generate_series(1, 100000000000)",
        "SELECT array_agg(g) FROM generate_series(1, 1000000000) AS g",
        "SELECT count(*) FROM query.samples a, query.samples b, query.samples c, query.samples d",
    ],
    ids=["sleep", "cpu", "memory", "cross-join"],
)
def test_long_statements_are_cancelled(database_url: str, two: TwoTenants, statement: str) -> None:
    short = make_console(database_url, timeout=timedelta(milliseconds=300))
    try:
        started = time.monotonic()
        with pytest.raises((SqlTimeout, SqlResourceLimit)):
            short.run(two.b.id, statement)
        assert time.monotonic() - started < 5
        # The connection is fine afterwards.
        assert short.run(two.b.id, "SELECT 1").rows == [(1,)]
    finally:
        short.close()


def test_a_full_pool_answers_with_a_timeout(database_url: str, two: TwoTenants) -> None:
    single = make_console(database_url, max_connections=1, wait=timedelta(milliseconds=200))
    try:
        busy = threading.Thread(target=single.run, args=(two.b.id, "SELECT pg_sleep(1)"))
        busy.start()
        time.sleep(0.2)
        with pytest.raises(SqlTimeout, match="too many are running"):
            single.run(two.b.id, "SELECT 1")
        busy.join()
    finally:
        single.close()


def test_values_columns_and_failures(console: SqlConsole, two: TwoTenants) -> None:
    found = console.run(
        two.b.id,
        "SELECT s.metric, s.labels, r.time, r.value, 'infinity'::timestamptz AS forever, "
        "'-infinity'::date AS never, interval '1 month 2 days 3 hours' AS span, "
        "'NaN'::float8 AS nan, 1.5::numeric AS exact "
        "FROM query.samples r JOIN query.series s ON s.id = r.series_id "
        "ORDER BY r.time, s.id LIMIT 1",
    )
    assert [(column.name, column.type) for column in found.columns] == [
        ("metric", "text"),
        ("labels", "jsonb"),
        ("time", "timestamptz"),
        ("value", "float8"),
        ("forever", "timestamptz"),
        ("never", "date"),
        ("span", "interval"),
        ("nan", "float8"),
        ("exact", "numeric"),
    ]
    metric, labels, at, value, forever, never, span, nan, exact = found.rows[0]
    assert (metric, labels, value) == ("cpu", {"host": "b1"}, 0.0)
    assert at == datetime.fromtimestamp(NOW_US / 1e6, UTC)
    assert (forever, never, span) == ("infinity", "-infinity", "P1M2DT3H")
    assert isinstance(nan, float) and math.isnan(nan)
    assert exact == Decimal("1.5")
    with pytest.raises(SqlDataError, match="division by zero"):
        console.run(two.b.id, "SELECT 1 / 0")
    with pytest.raises(SqlInvalid, match="does not exist"):
        console.run(two.b.id, "SELECT tenant_id FROM query.series")


def test_an_unreachable_database_is_unavailable(two: TwoTenants) -> None:
    nowhere = "postgresql://vigil@127.0.0.1:1/vigil_test"
    broken = SqlConsole(nowhere, reader_url(nowhere), row_limit=1, timeout=timedelta(seconds=1))
    try:
        with pytest.raises(DatabaseUnavailable, match="cannot connect"):
            broken.run(two.b.id, "SELECT 1")
    finally:
        broken.close()


def test_reader_url_replaces_user_and_drops_password() -> None:
    assert (
        reader_url("postgresql://vigil:secret@db.example:5433/vigil?sslmode=require")
        == f"postgresql://{READER_ROLE}@db.example:5433/vigil?sslmode=require"
    )
    assert reader_url("postgresql://vigil@[::1]/vigil") == f"postgresql://{READER_ROLE}@[::1]/vigil"
