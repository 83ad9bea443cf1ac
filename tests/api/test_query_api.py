"""The query endpoints over a live API: Prometheus's envelopes and parameters,
Vigil's own /v1/metrics/query with explain, limits, and tenant isolation."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import psycopg
import pytest

from storage import tenants
from storage.samples import SampleBatch, SampleWriter, SeriesSamples
from storage.series import SeriesCatalog, SeriesKey
from tests.live_servers import api_server, client
from vigil.settings import QuerySettings, Settings

T0 = 1_700_000_000
HOSTS = ("a", "b", "c")


@dataclass(frozen=True)
class Tenant:
    name: str
    key: str


def _write(conn: psycopg.Connection, issued: tenants.IssuedKey, metric: str, scale: float) -> None:
    times = (T0 + np.arange(0, 3600, 10, dtype=np.int64)) * 1_000_000
    series = [
        SeriesSamples(
            SeriesKey.of(metric, {"host": host, "region": "eu" if host != "c" else "us"}),
            times,
            scale * (index + 1) * (1 + np.arange(len(times), dtype=np.float64)),
        )
        for index, host in enumerate(HOSTS)
    ]
    batch = SampleBatch(key=f"query-api-{uuid.uuid4()}", tenant_id=issued.tenant.id, series=series)
    SampleWriter(SeriesCatalog()).write(conn, batch)


@pytest.fixture(scope="module")
def data(settings: Settings, database_url: str) -> tuple[Tenant, Tenant]:
    """Two tenants with the same metric names but different values."""
    from storage.database import connect

    with connect(database_url) as conn:
        first = tenants.create_tenant(conn, f"qa-{uuid.uuid4().hex[:10]}")
        second = tenants.create_tenant(conn, f"qb-{uuid.uuid4().hex[:10]}")
        _write(conn, first, "requests_total", 1.0)
        _write(conn, second, "requests_total", 1000.0)
        _write(conn, first, "only_first", 1.0)
    return Tenant(first.tenant.name, first.key), Tenant(second.tenant.name, second.key)


@pytest.fixture(scope="module")
def base_url(settings: Settings, data: object) -> Iterator[str]:
    limited = settings.model_copy(update={"query": QuerySettings(max_series=2, max_points=500)})
    with api_server(limited) as url:
        yield url


def _get(base_url: str, tenant: Tenant, path: str, **params: object) -> httpx.Response:
    with client(base_url, tenant.key) as http:
        return http.get(path, params=params)


def test_instant_query_in_prometheus_shape(base_url: str, data: tuple[Tenant, Tenant]) -> None:
    first, _ = data
    answer = _get(base_url, first, "/api/v1/query", query='requests_total{host="a"}', time=T0 + 600)
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "success"
    assert body["data"]["resultType"] == "vector"
    [sample] = body["data"]["result"]
    assert sample["metric"] == {"__name__": "requests_total", "host": "a", "region": "eu"}
    assert sample["value"] == [T0 + 600, "61"]
    assert answer.headers["X-Vigil-Tiers"] == "raw"
    assert "infos" not in answer.json()  # raw samples: nothing approximate


def test_range_query_post_form_rfc3339_and_duration_step(
    base_url: str, data: tuple[Tenant, Tenant]
) -> None:
    first, _ = data
    with client(base_url, first.key) as http:
        answer = http.post(
            "/api/v1/query_range",
            data={
                "query": 'sum by (region) (rate(requests_total{region="eu"}[1m]))',
                "start": "2023-11-14T22:23:20Z",  # T0 + 600
                "end": "2023-11-14T22:33:20Z",
                "step": "1m",
            },
        )
    assert answer.status_code == 200, answer.text
    [series] = answer.json()["data"]["result"]
    assert series["metric"] == {"region": "eu"}
    assert len(series["values"]) == 11
    # host a grows 0.1/s, host b 0.2/s
    assert all(abs(float(v) - 0.3) < 1e-9 for _, v in series["values"])


@pytest.mark.parametrize(
    ("path", "params", "status", "error_type", "fragment"),
    [
        ("/api/v1/query", {"query": "sum(", "time": T0}, 400, "bad_data", "expected"),
        ("/api/v1/query", {"query": "up", "time": "yesterday"}, 400, "bad_data", "time"),
        (
            "/api/v1/query_range",
            {"query": "requests_total", "start": T0, "end": T0 + 3600, "step": 1},
            400,
            "bad_data",
            "maximum resolution",
        ),
        (
            "/api/v1/query_range",
            {"query": "requests_total[5m]", "start": T0, "end": T0 + 60, "step": 15},
            400,
            "bad_data",
            "range vector",
        ),
        ("/api/v1/query", {"query": "requests_total", "time": T0 + 60}, 422, "execution", "series"),
        ("/api/v1/series", {}, 400, "bad_data", "match[]"),
        (
            "/api/v1/query_range",
            {
                "query": "requests_total",
                "start": T0,
                "end": T0 + 60,
                "step": 15,
                "include_late_data": "maybe",
            },
            400,
            "bad_data",
            "include_late_data",
        ),
    ],
)
def test_errors_use_prometheus_envelopes(
    base_url: str,
    data: tuple[Tenant, Tenant],
    path: str,
    params: dict[str, object],
    status: int,
    error_type: str,
    fragment: str,
) -> None:
    answer = _get(base_url, data[0], path, **params)
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["status"] == "error"
    assert body["errorType"] == error_type
    assert fragment in body["error"]


def test_metadata_endpoints(base_url: str, data: tuple[Tenant, Tenant]) -> None:
    first, _ = data
    series = _get(base_url, first, "/api/v1/series", **{"match[]": 'only_first{host="a"}'})
    assert series.json()["data"] == [{"__name__": "only_first", "host": "a", "region": "eu"}]
    labels = _get(base_url, first, "/api/v1/labels").json()["data"]
    assert labels == ["__name__", "host", "region"]
    names = _get(base_url, first, "/api/v1/label/__name__/values").json()["data"]
    assert names == ["only_first", "requests_total"]
    hosts = _get(
        base_url, first, "/api/v1/label/host/values", **{"match[]": '{region="us"}'}
    ).json()["data"]
    assert hosts == ["c"]
    info = _get(base_url, first, "/api/v1/status/buildinfo").json()
    assert info["status"] == "success" and info["data"]["version"]


def test_every_endpoint_sees_only_the_callers_tenant(
    base_url: str, data: tuple[Tenant, Tenant]
) -> None:
    _, second = data
    assert (
        _get(base_url, second, "/api/v1/query", query="only_first", time=T0 + 600).json()["data"][
            "result"
        ]
        == []
    )
    value = _get(
        base_url, second, "/api/v1/query", query='requests_total{host="a"}', time=T0 + 600
    ).json()["data"]["result"][0]["value"][1]
    assert value == "61000"
    ranged = _get(
        base_url,
        second,
        "/api/v1/query_range",
        query='{__name__=~".+", host="a"}',
        start=T0,
        end=T0 + 600,
        step=60,
    ).json()["data"]["result"]
    assert [s["metric"]["__name__"] for s in ranged] == ["requests_total"]
    assert (
        _get(base_url, second, "/api/v1/series", **{"match[]": "only_first"}).json()["data"] == []
    )
    names = _get(base_url, second, "/api/v1/label/__name__/values").json()["data"]
    assert names == ["requests_total"]
    mine = _get(
        base_url, second, "/v1/metrics/query", query="only_first", start=T0, end=T0 + 600
    ).json()
    assert mine["series"] == []


def test_v1_query_with_explain(base_url: str, data: tuple[Tenant, Tenant]) -> None:
    first, _ = data
    answer = _get(
        base_url,
        first,
        "/v1/metrics/query",
        query='requests_total{host="b"}',
        start=T0 + 600,
        end=T0 + 660,
        step=30,
        explain="true",
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    [series] = body["series"]
    assert series["metric"] == "requests_total"
    assert series["labels"] == {"host": "b", "region": "eu"}
    assert series["datapoints"] == [
        {"timestamp": T0 + 600, "value": 122.0},
        {"timestamp": T0 + 630, "value": 128.0},
        {"timestamp": T0 + 660, "value": 134.0},
    ]
    assert body["tiers"] == ["raw"]
    [segment] = body["explain"]["plan"]["segments"]
    assert segment == {"tier": "raw", "start": T0 + 600, "end": T0 + 660, "steps": 3}
    [statement] = body["explain"]["statements"]
    assert "vigil.series" in statement["sql"] and "date_bin" in statement["sql"].lower()
    assert str(statement["params"]["tenant"]) != ""


def test_unauthenticated_queries_are_refused(base_url: str) -> None:
    with client(base_url, None) as http:
        assert http.get("/api/v1/query", params={"query": "up"}).status_code == 401


_QUERY = 'requests_total{host="a"}'
_EVERY_QUERY_ENDPOINT = [
    ("/api/v1/query", {"query": _QUERY, "time": T0 + 600}),
    ("/api/v1/query_range", {"query": _QUERY, "start": T0, "end": T0 + 600, "step": 60}),
    ("/v1/metrics/query", {"query": _QUERY, "start": T0, "end": T0 + 600, "step": 60}),
]


def _error(answer: httpx.Response) -> tuple[str, str]:
    """(type or code, message) of a Prometheus envelope or of Vigil's /v1 error body."""
    body = answer.json()
    if "status" in body:
        assert body["status"] == "error"
        return body["errorType"], body["error"]
    return body["error"]["code"], body["error"]["message"]


@pytest.mark.parametrize(("path", "params"), _EVERY_QUERY_ENDPOINT)
@pytest.mark.parametrize("tier", ["5m", "RAW", ""])
def test_an_unknown_tier_is_refused_listing_the_choices(
    base_url: str, data: tuple[Tenant, Tenant], path: str, params: dict[str, object], tier: str
) -> None:
    answer = _get(base_url, data[0], path, **params, tier=tier)
    assert answer.status_code == 400, answer.text
    kind, message = _error(answer)
    assert kind == "bad_data"
    assert '"tier"' in message and "raw, 1m, 1h, 1d, auto" in message


@pytest.mark.parametrize(("path", "params"), _EVERY_QUERY_ENDPOINT)
def test_a_tier_is_passed_to_the_planner(
    base_url: str, data: tuple[Tenant, Tenant], path: str, params: dict[str, object]
) -> None:
    first, _ = data
    raw = _get(base_url, first, path, **params, tier="raw")
    assert raw.status_code == 200, raw.text
    if path.startswith("/api/"):
        assert raw.headers["X-Vigil-Tiers"] == "raw"
    else:
        assert raw.json()["tiers"] == ["raw"]
    # A rollup tier cannot answer changes(); only a forced one says so.
    changes = {**params, "query": f"changes({_QUERY}[5m])"}
    assert _get(base_url, first, path, **changes).status_code == 200
    forced = _get(base_url, first, path, **changes, tier="1h")
    assert forced.status_code == 400, forced.text
    assert _error(forced)[0] == "bad_data" and "1h tier" in _error(forced)[1]


def test_a_tier_in_a_post_form(base_url: str, data: tuple[Tenant, Tenant]) -> None:
    with client(base_url, data[0].key) as http:
        form = {"query": _QUERY, "time": str(T0 + 600)}
        assert http.post("/api/v1/query", data={**form, "tier": "raw"}).status_code == 200
        refused = http.post("/api/v1/query", data={**form, "tier": "weekly"})
    assert refused.status_code == 400 and "raw, 1m, 1h, 1d, auto" in refused.json()["error"]
