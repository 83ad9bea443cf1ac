"""`/v1/retention` over a live API: a tenant's overrides round-trip, bad input is a 400
saying why, and no tenant sees or touches another's overrides."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from storage import tenants
from tests.live_servers import api_server, client
from vigil.settings import Settings


@pytest.fixture(scope="module")
def base_url(settings: Settings, database_url: str) -> Iterator[str]:
    with api_server(settings) as url:
        yield url


def test_overrides_round_trip(base_url: str, issued: tenants.IssuedKey) -> None:
    with client(base_url, issued.key) as http:
        empty = http.get("/v1/retention")
        assert empty.status_code == 200
        assert empty.json() == {
            "defaults": {"raw": "2d", "1m": "14d", "1h": "90d", "1d": "730d"},
            "overrides": [],
        }

        put = http.put(
            "/v1/retention", json={"tier": "raw", "pattern": "billing_*", "retention": "30d"}
        )
        assert put.status_code == 200, put.text
        assert put.json()["retention"] == "30d" and put.json()["retention_s"] == 30 * 86400
        http.put("/v1/retention", json={"tier": "1h", "pattern": "billing_*", "retention": "400d"})
        replaced = http.put(
            "/v1/retention", json={"tier": "1h", "pattern": "billing_*", "retention": "52w"}
        )
        assert replaced.json()["retention"] == "364d"

        listed = http.get("/v1/retention").json()["overrides"]
        assert [(o["tier"], o["pattern"], o["retention"]) for o in listed] == [
            ("raw", "billing_*", "30d"),
            ("1h", "billing_*", "364d"),
        ]

        deleted = http.delete("/v1/retention", params={"tier": "raw", "pattern": "billing_*"})
        assert deleted.status_code == 204
        again = http.delete("/v1/retention", params={"tier": "raw", "pattern": "billing_*"})
        assert again.status_code == 404
        assert again.json()["error"]["code"] == "not_found"
        assert [o["tier"] for o in http.get("/v1/retention").json()["overrides"]] == ["1h"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"tier": "5m", "pattern": "billing_*", "retention": "30d"}, "unknown tier '5m'"),
        ({"tier": "raw", "pattern": "billing.*", "retention": "30d"}, "invalid metric pattern"),
        ({"tier": "raw", "pattern": "billing_*", "retention": "a month"}, "invalid retention"),
        ({"tier": "raw", "pattern": "billing_*", "retention": "1d"}, "not longer than its global"),
        ({"tier": "1d", "pattern": "billing_*", "retention": "700d"}, "whole chunks"),
    ],
)
def test_bad_input_is_a_400_saying_why(
    base_url: str, issued: tenants.IssuedKey, body: dict[str, str], message: str
) -> None:
    with client(base_url, issued.key) as http:
        response = http.put("/v1/retention", json=body)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_retention"
        assert message in response.json()["error"]["message"]
        assert http.get("/v1/retention").json()["overrides"] == []


def test_tenants_see_and_touch_only_their_own(
    base_url: str, issued: tenants.IssuedKey, conn: psycopg.Connection
) -> None:
    other = tenants.create_tenant(conn, f"t-{uuid.uuid4().hex[:16]}")
    with client(base_url, issued.key) as http:
        http.put("/v1/retention", json={"tier": "raw", "pattern": "billing_*", "retention": "30d"})
    with client(base_url, other.key) as http:
        assert http.get("/v1/retention").json()["overrides"] == []
        refused = http.delete("/v1/retention", params={"tier": "raw", "pattern": "billing_*"})
        assert refused.status_code == 404
    with client(base_url, issued.key) as http:
        assert len(http.get("/v1/retention").json()["overrides"]) == 1


def test_unauthenticated_calls_are_refused(base_url: str) -> None:
    with client(base_url, None) as http:
        assert http.get("/v1/retention").status_code == 401
        assert http.put("/v1/retention", json={}).status_code == 401
