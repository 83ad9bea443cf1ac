"""`POST /v1/sql` over a live API: answers, rejections with reasons, limits, and tenant
B's attempts to read tenant A's rows through every layer."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import numpy as np
import pytest

from storage import tenants
from storage.database import connect
from storage.samples import SampleBatch, SampleWriter, SeriesSamples
from storage.series import SeriesCatalog, SeriesKey
from tests.live_servers import api_server, client
from vigil.settings import Settings

T0_US = 1_700_000_000_000_000
MINUTE_US = 60_000_000
ROW_LIMIT = 50
A_SECRET = "a-secret-token"


@dataclass(frozen=True)
class Caller:
    tenant: tenants.Tenant
    key: str


@dataclass(frozen=True)
class Callers:
    a: Caller
    b: Caller


def write(issued: tenants.IssuedKey, keys: list[SeriesKey], database_url: str) -> None:
    """20 one-minute samples per series: 0, 1, 2 … scaled by the series' position,
    with NaN, +Inf and -Inf as the last three values of the first series."""
    parts = []
    for n, key in enumerate(keys):
        values = np.arange(20, dtype=np.float64) * (n + 1)
        if n == 0:
            values[-3:] = [math.nan, math.inf, -math.inf]
        times = T0_US + np.arange(20, dtype=np.int64) * MINUTE_US
        parts.append(SeriesSamples(key, times, values))
    with connect(database_url) as conn:
        SampleWriter(SeriesCatalog()).write(
            conn,
            SampleBatch(key=f"sql-api-{uuid.uuid4()}", tenant_id=issued.tenant.id, series=parts),
        )


@pytest.fixture(scope="module")
def callers(database_url: str) -> Callers:
    with connect(database_url) as conn:
        a = tenants.create_tenant(conn, f"sql-api-a-{uuid.uuid4().hex[:10]}")
        b = tenants.create_tenant(conn, f"sql-api-b-{uuid.uuid4().hex[:10]}")
    write(a, [SeriesKey.of("a_secret_metric", {"token": A_SECRET})], database_url)
    write(
        b,
        [
            SeriesKey.of("cpu", {"host": "b1"}),
            SeriesKey.of("cpu", {"host": "b2"}),
            SeriesKey.of("mem", {"host": "b1"}),
        ],
        database_url,
    )
    return Callers(Caller(a.tenant, a.key), Caller(b.tenant, b.key))


@pytest.fixture(scope="module")
def base_url(settings: Settings, callers: Callers) -> Iterator[str]:
    query = settings.query.model_copy(
        update={"sql_row_limit": ROW_LIMIT, "sql_timeout": timedelta(milliseconds=500)}
    )
    with api_server(settings.model_copy(update={"query": query})) as url:
        yield url


def sql(base_url: str, caller: Caller | None, statement: str) -> httpx.Response:
    with client(base_url, caller.key if caller else None) as http:
        return http.post("/v1/sql", json={"sql": statement})


def rows(response: httpx.Response) -> list[list[Any]]:
    assert response.status_code == 200, response.text
    found: list[list[Any]] = response.json()["rows"]
    return found


def test_aggregation_over_samples_joined_to_series(base_url: str, callers: Callers) -> None:
    response = sql(
        base_url,
        callers.b,
        "SELECT s.metric, s.labels->>'host' AS host, count(*) AS n, sum(r.value) AS total "
        "FROM samples r JOIN series s ON s.id = r.series_id "
        "WHERE s.metric = 'cpu' AND s.labels->>'host' = 'b2' GROUP BY 1, 2",
    )
    assert response.json() == {
        "columns": [
            {"name": "metric", "type": "text"},
            {"name": "host", "type": "text"},
            {"name": "n", "type": "int8"},
            {"name": "total", "type": "float8"},
        ],
        "rows": [["cpu", "b2", 20, 2.0 * sum(range(20))]],
        "row_count": 1,
        "truncated": False,
    }


def test_ctes_and_window_functions(base_url: str, callers: Callers) -> None:
    found = rows(
        sql(
            base_url,
            callers.b,
            "WITH mem AS (SELECT r.time, r.value FROM samples r JOIN series s "
            "ON s.id = r.series_id WHERE s.metric = 'mem') "
            "SELECT time, value - lag(value) OVER (ORDER BY time) AS delta FROM mem "
            "ORDER BY time LIMIT 3",
        )
    )
    assert found == [
        ["2023-11-14T22:13:20+00:00", None],
        ["2023-11-14T22:14:20+00:00", 3.0],
        ["2023-11-14T22:15:20+00:00", 3.0],
    ]


def test_values_are_json(base_url: str, callers: Callers) -> None:
    found = rows(
        sql(
            base_url,
            callers.b,
            "SELECT r.value, s.labels, time_bucket('1 hour', r.time) AS hour, "
            "interval '90 minutes' AS span, 2.50::numeric AS exact, 7::numeric AS whole "
            "FROM samples r JOIN series s ON s.id = r.series_id "
            "WHERE s.metric = 'cpu' AND s.labels->>'host' = 'b1' ORDER BY r.time DESC LIMIT 3",
        )
    )
    assert [row[0] for row in found] == ["-Inf", "+Inf", "NaN"]
    assert found[0][1:] == [{"host": "b1"}, "2023-11-14T22:00:00+00:00", "PT1H30M", 2.5, 7]


def test_text_plain_bodies_are_statements(base_url: str, callers: Callers) -> None:
    with client(base_url, callers.b.key) as http:
        response = http.post(
            "/v1/sql",
            content="SELECT count(*) FROM series",
            headers={"content-type": "text/plain; charset=utf-8"},
        )
    assert rows(response) == [[3]]


def test_rows_beyond_the_limit_are_cut_and_flagged(base_url: str, callers: Callers) -> None:
    response = sql(base_url, callers.b, "SELECT * FROM samples")
    body = response.json()
    assert (body["row_count"], len(body["rows"]), body["truncated"]) == (ROW_LIMIT, ROW_LIMIT, True)


def test_a_long_statement_times_out(base_url: str, callers: Callers) -> None:
    response = sql(
        base_url,
        callers.b,
        "SELECT count(*) FROM samples a, samples b, samples c, samples d, samples e",
    )
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "timeout"
    assert "time limit" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("statement", "reason"),
    [
        ("DELETE FROM samples", "only a SELECT statement is allowed, not DELETE"),
        ("SELECT * FROM vigil.series", "relation vigil.series is not allowed"),
        ("SELECT pg_sleep(1)", "function pg_sleep is not allowed"),
        ("SELECT 1; SELECT 2", "expected exactly one statement, got 2"),
        ("SELECT * FROM series FOR UPDATE", "locking clause FOR UPDATE"),
        ("SELECT nope FROM series", 'the database refused the statement: column "nope"'),
    ],
)
def test_rejections_are_400_with_the_reason(
    base_url: str, callers: Callers, statement: str, reason: str
) -> None:
    response = sql(base_url, callers.b, statement)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "sql_rejected"
    assert reason in error["message"]


def test_failures_on_data_are_422(base_url: str, callers: Callers) -> None:
    response = sql(base_url, callers.b, "SELECT 1 / (count(*) - count(*)) FROM samples")
    assert response.status_code == 422
    assert "division by zero" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b'{"query": "SELECT 1"}', "application/json", "sql: Field required"),
        (b"SELECT 1", "application/json", "the body must be JSON"),
        (b"<sql/>", "application/xml", "unsupported content type application/xml"),
    ],
)
def test_malformed_bodies_are_400(
    base_url: str, callers: Callers, body: bytes, content_type: str, message: str
) -> None:
    with client(base_url, callers.b.key) as http:
        response = http.post("/v1/sql", content=body, headers={"content-type": content_type})
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


def test_callers_must_authenticate(base_url: str) -> None:
    assert sql(base_url, None, "SELECT 1").status_code == 401


# Tenant B's tricks; each is refused (400) or answers with B's rows only.
TRICKS = [
    "SELECT * FROM series",
    "TABLE samples",
    "SELECT * FROM samples WHERE series_id NOT IN (SELECT id FROM series)",
    "SELECT * FROM query.series s JOIN query.samples r ON r.series_id = s.id",
    "SELECT * FROM vigil.series",
    "SELECT * FROM vigil.samples_raw",
    'SELECT * FROM "vigil".series',
    "WITH series AS (SELECT * FROM vigil.series) SELECT * FROM series",
    "SELECT set_config('vigil.sql_tenant', '{a}', true), * FROM series",
    "SELECT * FROM series WHERE current_setting('vigil.sql_tenant') <> ''",
    "SET vigil.sql_tenant = '{a}'",
    "SET ROLE vigil",
    "RESET ROLE",
    "SELECT 1; SET ROLE vigil; SELECT * FROM vigil.series",
    "SELECT query_to_xml('SELECT * FROM vigil.series', true, true, '')",
    "SELECT * FROM pg_stat_activity",
    "SELECT * FROM pg_catalog.pg_stats WHERE schemaname = 'vigil'",
    "SELECT * FROM information_schema.columns",
    "WITH d AS (DELETE FROM samples RETURNING *) SELECT * FROM d",
    "SELECT * INTO TEMP stolen FROM series",
    "SELECT /* */ * FROM -- \n vigil.series",
    "EXPLAIN SELECT * FROM series WHERE metric = 'a_secret_metric'",
    "SELECT * FROM samples WHERE series_id = (SELECT min(id) FROM series) - 1",
]


@pytest.mark.parametrize("trick", TRICKS)
def test_tenant_b_never_sees_tenant_a(base_url: str, callers: Callers, trick: str) -> None:
    response = sql(base_url, callers.b, trick.format(a=callers.a.tenant.id))
    assert response.status_code in (200, 400), response.text
    assert A_SECRET not in response.text
    assert "a_secret_metric" not in response.text
    assert str(callers.a.tenant.id) not in response.text or response.status_code == 400


def test_each_tenant_counts_only_its_own(base_url: str, callers: Callers) -> None:
    statement = "SELECT count(*), count(DISTINCT series_id) FROM samples"
    assert rows(sql(base_url, callers.a, statement)) == [[20, 1]]
    assert rows(sql(base_url, callers.b, statement)) == [[60, 3]]
