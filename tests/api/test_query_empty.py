"""Queries over series that do not exist answer in Prometheus's shape over the live
API: an empty result, or what the other side of `or` gives (issue 11)."""

from __future__ import annotations

from typing import Any

from storage import tenants
from tests.live_servers import api_server, client
from vigil.settings import Settings

T0 = 1_700_000_000
STEPS = [T0, T0 + 15, T0 + 30, T0 + 45, T0 + 60]


def test_queries_over_missing_series_answer_in_prometheus_shape(
    settings: Settings, issued: tenants.IssuedKey
) -> None:
    """Each crashed once: an empty `count_values` (float mask) met `==`, and an empty
    right operand of `or` made a range query index its times with floats."""
    ranged = {"start": T0, "end": T0 + 60, "step": 15}
    zeros = [{"metric": {}, "values": [[t, "0"] for t in STEPS]}]
    cases: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        (
            "/api/v1/query_range",
            {"query": "sum(nonexistent) or vector(0)", **ranged},
            {"resultType": "matrix", "result": zeros},
        ),
        (
            "/api/v1/query_range",
            {"query": "vector(0) or sum(nonexistent)", **ranged},
            {"resultType": "matrix", "result": zeros},
        ),
        (
            "/api/v1/query",
            {"query": "sum(nonexistent) or vector(0)", "time": T0},
            {"resultType": "vector", "result": [{"metric": {}, "value": [T0, "0"]}]},
        ),
        (
            "/api/v1/query",
            {"query": 'count_values("A", nonexistent_metric) == 0', "time": T0},
            {"resultType": "vector", "result": []},
        ),
        (
            "/api/v1/query_range",
            {"query": 'count_values("A", nonexistent_metric) == 0', **ranged},
            {"resultType": "matrix", "result": []},
        ),
    ]
    with api_server(settings) as url, client(url, issued.key) as http:
        for path, params, data in cases:
            answer = http.get(path, params=params)
            assert answer.status_code == 200, (params["query"], answer.text)
            body = answer.json()
            assert body["status"] == "success"
            assert {key: body["data"][key] for key in data} == data, params["query"]
