"""The raw-SQL guard: what it lets through (and the SQL it runs instead), what it refuses
and why, and that every function it allows runs for the reader role."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import numpy as np
import pytest
import sqlglot
from sqlglot import exp

from querylang.errors import EvaluationError, QueryLimitExceeded, QueryTimeout, SqlRejected
from querylang.sql_guard import (
    MAX_SQL_CHARS,
    NAMED_FUNCTIONS,
    TYPED_FUNCTIONS,
    guard,
    run_sql,
)
from storage import tenants
from storage.database import connect
from storage.samples import SampleBatch, SampleWriter, SeriesSamples
from storage.series import SeriesCatalog, SeriesKey
from storage.sql_console import (
    SqlConsole,
    SqlDataError,
    SqlInvalid,
    SqlResourceLimit,
    SqlRows,
    SqlTimeout,
    reader_url,
)

# (what a tenant sends, what the database runs)
ACCEPTED = [
    ("SELECT 1;", "SELECT 1"),
    ("TABLE series", 'SELECT * FROM "query"."series"'),
    ("select * from Samples", 'SELECT * FROM "query"."samples"'),
    ("SELECT * FROM query.samples", 'SELECT * FROM "query"."samples"'),
    (
        "SELECT s.metric, avg(r.value) FROM samples r JOIN series s ON s.id = r.series_id "
        "WHERE r.time > now() - interval '1 hour' GROUP BY 1",
        'SELECT "s"."metric", AVG("r"."value") FROM "query"."samples" AS "r" '
        'JOIN "query"."series" AS "s" ON "s"."id" = "r"."series_id" '
        'WHERE "r"."time" > CURRENT_TIMESTAMP - INTERVAL \'1 HOUR\' GROUP BY 1',
    ),
    # A CTE shadows the view of its name, as in PostgreSQL.
    (
        "WITH samples AS (SELECT 1 AS x) SELECT * FROM samples",
        'WITH "samples" AS (SELECT 1 AS "x") SELECT * FROM "samples"',
    ),
    (
        "WITH a AS (SELECT * FROM series), b AS (SELECT * FROM a) SELECT * FROM b",
        'WITH "a" AS (SELECT * FROM "query"."series"), "b" AS (SELECT * FROM "a") '
        'SELECT * FROM "b"',
    ),
    ("(SELECT 1) UNION ALL (SELECT 2)", "(SELECT 1) UNION ALL (SELECT 2)"),
    (
        "SELECT labels->>'host' FROM series, LATERAL jsonb_each_text(labels) AS kv(k, v)",
        'SELECT "labels" ->> \'host\' FROM "query"."series", '
        'LATERAL JSONB_EACH_TEXT("labels") AS "kv"("k", "v")',
    ),
    # Comments are dropped, so nothing can hide in them; strings come back re-quoted.
    ("SELECT 1 -- ; DROP TABLE vigil.series", "SELECT 1"),
    ("SELECT 1 /* */ ; /* trailing */", "SELECT 1"),
    ("SELECT 'a */ ; SELECT 2 --' AS x", "SELECT 'a */ ; SELECT 2 --' AS \"x\""),
    ("SELECT $$ it's $$ AS x", "SELECT ' it''s ' AS \"x\""),
    ("SELECT E'\\'' AS x", "SELECT e'''' AS \"x\""),
    ("SELECT x FROM (VALUES (1), (2)) AS v(x)", 'SELECT "x" FROM (VALUES (1), (2)) AS "v"("x")'),
    # Parentheses in strings and comments do not count towards the nesting limit.
    ("SELECT '" + "(" * 40 + "' AS x -- " + "(" * 40, "SELECT '" + "(" * 40 + '\' AS "x"'),
    ("SELECT " + "(" * 32 + "1" + ")" * 32, "SELECT " + "(" * 32 + "1" + ")" * 32),
]


@pytest.mark.parametrize(("text", "runs"), ACCEPTED)
def test_accepted_statements_run_as_regenerated(text: str, runs: str) -> None:
    assert guard(text) == runs
    assert guard(runs) == runs  # what runs passes the guard again, unchanged


# (what a tenant sends, part of the reason it is refused)
REJECTED = [
    ("", "exactly one statement, got 0"),
    ("SELECT 1; SELECT 2", "exactly one statement, got 2"),
    ("SELECT 1; SET vigil.sql_tenant = 'x'", "exactly one statement, got 2"),
    ("VALUES (1)", "only a SELECT statement is allowed, not VALUES"),
    ("(VALUES (1))", "only a SELECT statement is allowed, not VALUES"),
    ("EXPLAIN SELECT * FROM samples", "not EXPLAIN"),
    ("COPY (SELECT * FROM samples) TO STDOUT", "not COPY"),
    ("COPY series TO '/tmp/x'", "not COPY"),
    ("SET ROLE vigil", "not SET"),
    ("RESET ROLE", "not RESET"),
    ("SET vigil.sql_tenant = 'x'", "not SET"),
    ("SET SESSION AUTHORIZATION vigil", "not SET"),
    ("DELETE FROM samples", "not DELETE"),
    ("INSERT INTO series VALUES (1)", "not INSERT"),
    ("DROP VIEW series", "not DROP"),
    ("WITH d AS (DELETE FROM samples RETURNING *) SELECT * FROM d", "DELETE inside a SELECT"),
    ("WITH i AS (INSERT INTO series VALUES (1) RETURNING *) SELECT 1", "INSERT inside"),
    ("WITH u AS (UPDATE series SET metric = 'x' RETURNING *) SELECT 1", "UPDATE inside"),
    ("SELECT * INTO stolen FROM series", "SELECT ... INTO is not allowed"),
    ("SELECT * FROM series FOR UPDATE", "locking clause FOR UPDATE"),
    ("SELECT * FROM series FOR SHARE NOWAIT", "locking clause FOR SHARE NOWAIT"),
    ("SELECT * FROM (SELECT * FROM samples FOR NO KEY UPDATE) s", "locking clause"),
    (
        "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t) SELECT * FROM t",
        "RECURSIVE",
    ),
    ("SELECT * FROM vigil.series", "relation vigil.series is not allowed"),
    ('SELECT * FROM "vigil"."samples_raw"', "relation vigil.samples_raw"),
    ("SELECT * FROM vigil.samples", "relation vigil.samples"),
    ("TABLE vigil.tenant", "relation vigil.tenant"),
    ("SELECT * FROM vigil.query.samples", "relation vigil.query.samples"),
    ("SELECT * FROM a.vigil.query.samples", "relation a.vigil.query.samples"),
    ("SELECT * FROM ROWS FROM (pg_sleep(1))", "function pg_sleep"),
    ('SELECT * FROM "Series"', "relation Series"),
    ("SELECT * FROM pg_stat_activity", "relation pg_stat_activity"),
    ("SELECT * FROM pg_catalog.pg_class", "relation pg_catalog.pg_class"),
    ("SELECT * FROM information_schema.tables", "relation information_schema.tables"),
    ("SELECT * FROM _timescaledb_internal._hyper_1_1_chunk", "relation _timescaledb_internal"),
    ("SELECT (SELECT count(*) FROM vigil.api_key)", "relation vigil.api_key"),
    ("SELECT * FROM samples UNION SELECT * FROM vigil.samples_raw", "relation vigil.samples_raw"),
    # A CTE is visible only inside the query that owns its WITH.
    ("SELECT * FROM (WITH pg_class AS (SELECT 1) SELECT 1) x, pg_class", "relation pg_class"),
    ("WITH b AS (SELECT * FROM a), a AS (SELECT 1) SELECT * FROM b", "relation a"),
    ('SELECT * FROM U&"\\0073eries"', "cannot parse"),
    ("SELECT pg_sleep(10)", "function pg_sleep is not allowed"),
    ("SELECT set_config('vigil.sql_tenant', 'x', true)", "function set_config"),
    ("SELECT current_setting('vigil.sql_tenant')", "function current_setting"),
    ("SELECT pg_read_file('/etc/passwd')", "function pg_read_file"),
    ("SELECT lo_import('/etc/passwd')", "function lo_import"),
    ("SELECT lo_create(0)", "function lo_create"),
    ("SELECT * FROM dblink('dbname=vigil', 'SELECT 1') AS t(x int)", "function dblink"),
    ("SELECT query_to_xml('SELECT * FROM vigil.series', true, true, '')", "function query_to_xml"),
    ("SELECT pg_cancel_backend(1)", "function pg_cancel_backend"),
    ("SELECT pg_advisory_lock(1)", "function pg_advisory_lock"),
    ("SELECT version()", "function version"),
    ("SELECT current_user", "function current_user"),
    ('SELECT "PG_SLEEP"(1)', "function pg_sleep"),
    (
        "SELECT pg_catalog.now()",
        "function pg_catalog.now is not allowed: call functions unqualified",
    ),
    ("SELECT query.time_bucket('1h', time) FROM samples", "call functions unqualified"),
    ("SELECT count(*) FROM generate_series(1, 1000000000000)", "function generate_series"),
    ("SELECT generate_series(1, 10)", "unbounded rows"),
    ("SELECT repeat('x', 1000000000)", "function repeat"),
    ("SELECT lpad('x', 1000000000)", "function lpad"),
    ("SELECT format('%1000000000s', 'x')", "function format"),
    ("SELECT 'vigil.series'::regclass", "type regclass is not allowed"),
    ("SELECT CAST(1 AS oid)", "type oid"),
    ("SELECT '<a/>'::xml", "type xml"),
    ("SELECT * FROM jsonb_to_record('{}') AS x(a regclass)", "function jsonb_to_record"),
    ("SELECT $1", "parameter $1 is not supported"),
    ("SELECT :name", "parameter"),
    ("SELECT %s", "parameter"),
    ("SELECT x" + " " * MAX_SQL_CHARS, "longer than"),
    ("SELECT " + "(" * 2000 + "1" + ")" * 2000, "nested too deeply"),
    ("SELECT " + "(" * 33 + "1" + ")" * 33, "more than 32 parentheses"),
]


@pytest.mark.parametrize(("text", "reason"), REJECTED)
def test_refused_statements_say_why(text: str, reason: str) -> None:
    with pytest.raises(SqlRejected) as refused:
        guard(text)
    assert reason in str(refused.value)


# One statement per allowed function (each runs in the database for the reader role).
EVERY_FUNCTION = [
    "SELECT count(*), count(DISTINCT series_id), sum(value), avg(value), min(value), "
    "max(value) FROM samples",
    "SELECT stddev(value), stddev_pop(value), stddev_samp(value), variance(value), "
    "var_pop(value) FROM samples",
    "SELECT percentile_cont(0.9) WITHIN GROUP (ORDER BY value), "
    "percentile_disc(0.5) WITHIN GROUP (ORDER BY value), "
    "mode() WITHIN GROUP (ORDER BY series_id) FROM samples",
    "SELECT bool_and(value > 0), bool_or(value > 0), every(value > 0) FROM samples",
    "SELECT array_agg(value ORDER BY time), string_agg(metric, ',' ORDER BY metric), "
    "jsonb_agg(labels), json_agg(metric), jsonb_object_agg(id, metric) FROM samples, series "
    "WHERE series.id = samples.series_id",
    "SELECT corr(value, series_id), covar_pop(value, series_id), covar_samp(value, series_id), "
    "regr_slope(value, series_id), regr_intercept(value, series_id), "
    "regr_r2(value, series_id), regr_count(value, series_id) FROM samples",
    "SELECT row_number() OVER w, rank() OVER w, dense_rank() OVER w, percent_rank() OVER w, "
    "cume_dist() OVER w, ntile(4) OVER w, lag(value) OVER w, lead(value, 2) OVER w, "
    "first_value(value) OVER w, last_value(value) OVER w, nth_value(value, 2) OVER w "
    "FROM samples WINDOW w AS (PARTITION BY series_id ORDER BY time)",
    "SELECT abs(-1.5), ceil(1.2), ceiling(1.2), floor(1.8), round(1.25, 1), trunc(1.9), "
    "sqrt(4.0), cbrt(8.0), exp(1.0), ln(2.0), log(100.0), log(2.0, 8.0), log10(1000.0), "
    "power(2.0, 10), 2.0 ^ 3, sign(-3), pi(), degrees(1.0), radians(90.0)",
    "SELECT sin(1.0), cos(1.0), tan(1.0), asin(0.5), acos(0.5), atan(1.0), atan2(1.0, 2.0), "
    "width_bucket(5.0, 0.0, 10.0, 4)",
    "SELECT coalesce(NULL, 1), nullif(1, 1), greatest(1, 2), least(1, 2), "
    "CASE WHEN value > 1 THEN 'big' ELSE 'small' END, value > 1 AND value < 2 OR value = 0 "
    "FROM samples",
    "SELECT lower(metric), upper(metric), length(metric), char_length(metric), "
    "substr(metric, 1, 2), substring(metric FROM 2), replace(metric, 'c', 'k'), "
    "concat(metric, '!'), concat_ws('/', metric, id), left(metric, 1), right(metric, 1) "
    "FROM series",
    "SELECT trim(' x '), btrim(' x '), ltrim(' x'), rtrim('x '), split_part('a,b', ',', 2), "
    "strpos('abc', 'b'), position('b' IN 'abc'), starts_with('abc', 'a'), "
    "regexp_replace('abc', 'b', 'x'), 'abc' ~ 'b', 'abc' ~* 'B', regexp_match('abc', 'b'), "
    "regexp_split_to_array('a,b', ','), initcap('abc'), reverse('abc'), md5('abc')",
    "SELECT * FROM regexp_matches('abcb', 'b', 'g')",
    "SELECT to_char(time, 'YYYY-MM-DD'), to_number('12.5', '99.9'), now(), "
    "current_timestamp, current_date, date_trunc('hour', time), date_part('minute', time), "
    "extract(epoch FROM time), date_bin('5 minutes', time, timestamptz '2000-01-01'), "
    "to_timestamp(0), make_interval(hours => 2), age(time), age(time, time), "
    "justify_interval(interval '30 days'), justify_days(interval '30 days'), "
    "justify_hours(interval '25 hours'), isfinite(time) FROM samples",
    "SELECT time_bucket('5 minutes', time), time_bucket('1 day', time, 'Europe/Berlin'), "
    "time_bucket('1 hour', time, timestamptz '2000-01-01 00:30Z') FROM samples",
    "SELECT labels -> 'host', labels ->> 'host', labels #> '{host}', labels #>> '{host}', "
    "labels @> '{\"host\": \"h1\"}', labels <@ labels, labels ? 'host', "
    "labels ?| ARRAY['host'], labels ?& ARRAY['host'] FROM series",
    "SELECT jsonb_extract_path(labels, 'host'), jsonb_extract_path_text(labels, 'host'), "
    "jsonb_typeof(labels), jsonb_array_length('[1]'), jsonb_build_object('m', metric), "
    "jsonb_build_array(metric), jsonb_strip_nulls(labels), to_jsonb(metric) FROM series",
    "SELECT k FROM series, jsonb_object_keys(labels) AS k",
    "SELECT * FROM series, jsonb_each(labels) AS e(k, v), jsonb_each_text(labels) AS t(k, v)",
    "SELECT * FROM jsonb_array_elements('[1, 2]'), jsonb_array_elements_text('[1]')",
    "SELECT unnest(ARRAY[1, 2]), array_length(ARRAY[1], 1), cardinality(ARRAY[1]), "
    "array_position(ARRAY[1, 2], 2), array_to_string(ARRAY[1, 2], ','), "
    "num_nulls(1, NULL), num_nonnulls(1, NULL), ROW(1, 'a')",
    "SELECT * FROM unnest(ARRAY[1, 2]) AS u(x)",
    "SELECT value::text, value::numeric(10, 2), value::real, value::double precision, "
    "series_id::int, (series_id % 100)::smallint, series_id::bigint, (value > 0)::boolean, "
    "time::date, time::timestamp, time::time, time::timetz, '1 hour'::interval, "
    "'{}'::json, '{}'::jsonb, 'x'::varchar(3), 'x'::char(1), ARRAY[1]::int[], "
    "'00000000-0000-0000-0000-000000000000'::uuid FROM samples",
]


def function_names(statement: str) -> set[str | type[exp.Expr]]:
    """The allowlist entries a statement uses: classes for typed nodes, names otherwise."""
    found: set[str | type[exp.Expr]] = set()
    for node in sqlglot.parse_one(statement, dialect="postgres").find_all(exp.Func):
        found.add(node.name.lower() if isinstance(node, exp.Anonymous) else type(node))
    return found


def test_every_allowed_function_has_a_statement() -> None:
    used = set().union(*(function_names(statement) for statement in EVERY_FUNCTION))
    assert used == set(TYPED_FUNCTIONS) | NAMED_FUNCTIONS


@pytest.fixture(scope="module")
def console(database_url: str) -> Iterator[SqlConsole]:
    found = SqlConsole(
        database_url, reader_url(database_url), row_limit=100, timeout=timedelta(seconds=10)
    )
    yield found
    found.close()


@pytest.fixture(scope="module")
def tenant(database_url: str) -> tenants.Tenant:
    """A tenant with two series of 30 samples."""
    with connect(database_url) as conn:
        found = tenants.create_tenant(conn, f"sql-guard-{uuid.uuid4().hex[:12]}").tenant
        times = 1_790_000_000_000_000 + np.arange(30, dtype=np.int64) * 60_000_000
        SampleWriter(SeriesCatalog()).write(
            conn,
            SampleBatch(
                key="guard",
                tenant_id=found.id,
                series=[
                    SeriesSamples(SeriesKey.of("cpu", {"host": f"h{n}"}), times, np.arange(30.0))
                    for n in (1, 2)
                ],
            ),
        )
    return found


@pytest.mark.parametrize("statement", EVERY_FUNCTION)
def test_allowed_functions_run_for_the_reader(
    console: SqlConsole, tenant: tenants.Tenant, statement: str
) -> None:
    assert run_sql(console, tenant.id, statement).rows


class Failing:
    """A runner whose database fails the statement with `error`."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.ran: list[str] = []

    def run(self, tenant_id: uuid.UUID, statement: str) -> SqlRows:
        self.ran.append(statement)
        raise self.error


@pytest.mark.parametrize(
    ("storage_error", "query_error", "error_type"),
    [
        (SqlTimeout("canceling statement"), QueryTimeout, "timeout"),
        (SqlResourceLimit("temporary file size exceeds"), QueryLimitExceeded, "execution"),
        (SqlInvalid('column "x" does not exist'), SqlRejected, "bad_data"),
        (SqlDataError("division by zero"), EvaluationError, "execution"),
    ],
)
def test_database_failures_become_query_errors(
    storage_error: Exception, query_error: type[Exception], error_type: str
) -> None:
    runner = Failing(storage_error)
    with pytest.raises(query_error) as raised:
        run_sql(runner, uuid.uuid4(), "select 1")
    assert str(storage_error) in str(raised.value)
    assert getattr(raised.value, "error_type", None) == error_type
    assert runner.ran == ["SELECT 1"]


def test_a_refused_statement_never_reaches_the_database() -> None:
    runner = Failing(AssertionError("must not run"))
    with pytest.raises(SqlRejected):
        run_sql(runner, uuid.uuid4(), "SELECT * FROM vigil.series")
    assert runner.ran == []
