"""The ingestion endpoints over real HTTP, through the real bus and writer, into TimescaleDB."""

from __future__ import annotations

import gzip
import json
import math
import struct
import time
import uuid
from collections.abc import Iterator

import cramjam
import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from ingest.wire import ingest_pb2, remote_pb2
from storage import tenants
from storage.tenants import IssuedKey
from tests.live_servers import api_server, client, wait_until, writers
from vigil.settings import Settings

STALE_NAN = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]

Row = tuple[str, tuple[tuple[str, str], ...], int, bytes]


def stored(conn: psycopg.Connection, tenant_id: uuid.UUID) -> list[Row]:
    """Every sample of a tenant as (metric, labels, Unix µs, value bytes), sorted."""
    rows = conn.execute(
        """
        SELECT s.metric, s.labels, (extract(epoch FROM r.time) * 1000000)::bigint,
               float8send(r.value)
        FROM vigil.samples r JOIN vigil.series s ON s.id = r.series_id
        WHERE s.tenant_id = %s
        """,
        (tenant_id,),
    ).fetchall()
    return sorted(
        # float8send gives the exact bits (big-endian); text would canonicalise NaNs.
        (metric, tuple(sorted(labels.items())), us, bytes(value)[::-1])
        for metric, labels, us, value in rows
    )


def row(metric: str, labels: dict[str, str], time_us: int, value: float) -> Row:
    return (metric, tuple(sorted(labels.items())), time_us, struct.pack("<d", value))


@pytest.fixture
def live(bus_settings: Settings) -> Iterator[str]:
    """The API and one writer on a bus of this test's own."""
    with api_server(bus_settings) as base_url, writers(bus_settings):
        yield base_url


def now_s() -> int:
    return int(time.time())


def test_json_batch_round_trips_exactly(
    live: str, issued: IssuedKey, conn: psycopg.Connection
) -> None:
    t = now_s() - 60
    body = {
        "metrics": [
            {
                "name": "cpu_usage",
                "labels": {"host": "server-1", "region": "us-east"},
                "value": 0.73,
                "timestamp": t,
            },
            {
                "name": "cpu_usage",
                "labels": {"host": "server-1", "region": "us-east"},
                "value": 0.75,
                "timestamp": t + 10.123456,
            },
            {
                "name": "disk_free",
                "labels": {"host": "server-1", "mount": "/"},
                "value": "NaN",
                "timestamp": t,
            },
            {"name": "queue_depth", "value": "+Inf", "timestamp": t},
        ]
    }
    with client(live, issued.key) as http:
        response = http.post("/v1/metrics/ingest", json=body)
    assert response.status_code == 202, response.text
    assert response.json() == {
        "accepted": 4,
        "rejected": 0,
        "rejected_by_code": {},
        "rejections": [],
    }
    expected = sorted(
        [
            row("cpu_usage", {"host": "server-1", "region": "us-east"}, t * 10**6, 0.73),
            row(
                "cpu_usage", {"host": "server-1", "region": "us-east"}, t * 10**6 + 10_123_456, 0.75
            ),
            row("disk_free", {"host": "server-1", "mount": "/"}, t * 10**6, math.nan),
            row("queue_depth", {}, t * 10**6, math.inf),
        ]
    )
    wait_until(lambda: len(stored(conn, issued.tenant.id)) >= 4)
    assert stored(conn, issued.tenant.id) == expected


@pytest.mark.parametrize("encoding", ["identity", "gzip", "snappy"])
def test_protobuf_batch_round_trips_exactly(
    live: str, issued: IssuedKey, conn: psycopg.Connection, encoding: str
) -> None:
    t = now_s() - 30
    batch = ingest_pb2.MetricBatch(batch_id=uuid.uuid4().hex)
    expected = []
    for i in range(300):
        labels = {"host": f"h{i % 7}", "endpoint": f"/api/{i % 5}"}
        batch.metrics.add(name=f"m_{i % 3}", labels=labels, value=i * 0.5, timestamp=t + i)
        expected.append(row(f"m_{i % 3}", labels, (t + i) * 10**6, i * 0.5))
    payload = batch.SerializeToString()
    compressed = {
        "identity": payload,
        "gzip": gzip.compress(payload),
        "snappy": bytes(cramjam.snappy.compress_raw(payload)),
    }[encoding]
    headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": encoding}
    with client(live, issued.key) as http:
        response = http.post("/v1/metrics/ingest", content=compressed, headers=headers)
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 300
    wait_until(lambda: len(stored(conn, issued.tenant.id)) >= 300)
    assert stored(conn, issued.tenant.id) == sorted(expected)


def remote_write_body(series: list[tuple[dict[str, str], list[tuple[int, float]]]]) -> bytes:
    request = remote_pb2.WriteRequest()
    for labels, samples in series:
        timeseries = request.timeseries.add()
        for name, value in sorted(labels.items()):
            timeseries.labels.add(name=name, value=value)
        for timestamp_ms, value in samples:
            timeseries.samples.add(timestamp=timestamp_ms, value=value)
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


REMOTE_WRITE_HEADERS = {
    "Content-Type": "application/x-protobuf",
    "Content-Encoding": "snappy",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}


def test_remote_write_round_trips_exactly_with_stale_markers(
    live: str, issued: IssuedKey, conn: psycopg.Connection
) -> None:
    t_ms = now_s() * 1000 - 60_000
    body = remote_write_body(
        [
            (
                {"__name__": "up", "job": "node", "instance": "a:9100"},
                [(t_ms, 1.0), (t_ms + 15_000, STALE_NAN)],
            ),
            (
                {"__name__": "http_requests_total", "job": "api", "code": "200"},
                [(t_ms + 1, 12345.0)],
            ),
        ]
    )
    with client(live, issued.key) as http:
        response = http.post("/api/v1/write", content=body, headers=REMOTE_WRITE_HEADERS)
    assert response.status_code == 204, response.text
    expected = sorted(
        [
            row("up", {"job": "node", "instance": "a:9100"}, t_ms * 1000, 1.0),
            row("up", {"job": "node", "instance": "a:9100"}, (t_ms + 15_000) * 1000, STALE_NAN),
            row("http_requests_total", {"job": "api", "code": "200"}, (t_ms + 1) * 1000, 12345.0),
        ]
    )
    wait_until(lambda: len(stored(conn, issued.tenant.id)) >= 3)
    assert stored(conn, issued.tenant.id) == expected


def test_remote_write_with_rejected_samples_keeps_the_good_ones_and_answers_400(
    live: str, issued: IssuedKey, conn: psycopg.Connection
) -> None:
    t_ms = now_s() * 1000
    body = remote_write_body(
        [
            ({"__name__": "good", "job": "x"}, [(t_ms, 1.0)]),
            ({"__name__": "too_old", "job": "x"}, [(t_ms - 3 * 3600 * 1000, 1.0)]),
            ({"__name__": "bad-name"}, [(t_ms, 1.0)]),
        ]
    )
    with client(live, issued.key) as http:
        response = http.post("/api/v1/write", content=body, headers=REMOTE_WRITE_HEADERS)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "samples_rejected"
    assert "1 invalid_metric_name" in error["message"]
    assert "1 sample_too_old" in error["message"]
    wait_until(lambda: len(stored(conn, issued.tenant.id)) >= 1)
    time.sleep(0.5)
    assert [r[0] for r in stored(conn, issued.tenant.id)] == ["good"]


def test_every_sample_is_stamped_with_the_keys_tenant(
    live: str, issued: IssuedKey, conn: psycopg.Connection
) -> None:
    other = tenants.create_tenant(conn, f"t-{uuid.uuid4().hex[:16]}")
    t = now_s()
    for key, value in ((issued.key, 1.0), (other.key, 2.0)):
        with client(live, key) as http:
            body = {
                "metrics": [
                    {"name": "shared", "labels": {"a": "b"}, "value": value, "timestamp": t}
                ]
            }
            assert http.post("/v1/metrics/ingest", json=body).status_code == 202
    wait_until(lambda: stored(conn, issued.tenant.id) and stored(conn, other.tenant.id))
    assert stored(conn, issued.tenant.id) == [row("shared", {"a": "b"}, t * 10**6, 1.0)]
    assert stored(conn, other.tenant.id) == [row("shared", {"a": "b"}, t * 10**6, 2.0)]


def test_partial_batch_reports_each_rejected_index(live: str, issued: IssuedKey) -> None:
    t = now_s()
    body = {
        "metrics": [
            {"name": "ok", "value": 1, "timestamp": t},
            {"name": "bad-name", "value": 1, "timestamp": t},
            {"name": "old", "value": 1, "timestamp": t - 3 * 3600},
            {"name": "future", "value": 1, "timestamp": t + 3600},
            {"name": "ok", "labels": {"1bad": "x"}, "value": 1, "timestamp": t},
            {"name": "ok", "value": "abc", "timestamp": t},
        ]
    }
    with client(live, issued.key) as http:
        response = http.post("/v1/metrics/ingest", json=body)
    assert response.status_code == 202
    result = response.json()
    assert (result["accepted"], result["rejected"]) == (1, 5)
    assert result["rejected_by_code"] == {
        "invalid_label_name": 1,
        "invalid_metric_name": 1,
        "invalid_value": 1,
        "sample_in_future": 1,
        "sample_too_old": 1,
    }
    assert [(r["index"], r["code"]) for r in result["rejections"]] == [
        (1, "invalid_metric_name"),
        (2, "sample_too_old"),
        (3, "sample_in_future"),
        (4, "invalid_label_name"),
        (5, "invalid_value"),
    ]


def test_retried_batches_are_stored_once(
    live: str, issued: IssuedKey, conn: psycopg.Connection
) -> None:
    t = now_s()
    with_id = ingest_pb2.MetricBatch(batch_id="agent-7-batch-42")
    for i in range(50):
        with_id.metrics.add(name="retried", labels={"i": str(i)}, value=i, timestamp=t)
    without_id = {"metrics": [{"name": "anonymous", "value": 1, "timestamp": t}]}
    with client(live, issued.key) as http:
        for _ in range(3):
            response = http.post(
                "/v1/metrics/ingest",
                content=with_id.SerializeToString(),
                headers={"Content-Type": "application/x-protobuf"},
            )
            assert response.status_code == 202
            assert http.post("/v1/metrics/ingest", json=without_id).status_code == 202
            time.sleep(0.3)
    wait_until(lambda: len(stored(conn, issued.tenant.id)) >= 51)
    time.sleep(0.5)
    assert len(stored(conn, issued.tenant.id)) == 51


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing API key"),
        ({"Authorization": "Bearer vgl_000000000000_" + "A" * 43}, "invalid or revoked"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "invalid or revoked"),  # user:pass
        ({"Authorization": "Basic !!"}, "missing API key"),
        ({"X-API-Key": "nonsense"}, "invalid or revoked"),
    ],
)
def test_requests_without_a_valid_key_get_401(
    live: str, headers: dict[str, str], reason: str
) -> None:
    for path in ("/v1/metrics/ingest", "/api/v1/write"):
        response = httpx.post(live + path, content=b"{}", headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"]["code"] == "unauthorized"
        assert reason in response.json()["error"]["message"]


def test_x_api_key_header_and_revocation(
    live: str, issued: IssuedKey, conn: psycopg.Connection
) -> None:
    body = {"metrics": [{"name": "m", "value": 1, "timestamp": now_s()}]}
    response = httpx.post(f"{live}/v1/metrics/ingest", json=body, headers={"X-API-Key": issued.key})
    assert response.status_code == 202
    spare = tenants.create_api_key(conn, issued.tenant.name)
    tenants.revoke_api_key(conn, spare.key_id)
    response = httpx.post(f"{live}/v1/metrics/ingest", json=body, headers={"X-API-Key": spare.key})
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("path", "content", "headers", "status", "code"),
    [
        (
            "/v1/metrics/ingest",
            b"{not json",
            {"Content-Type": "application/json"},
            400,
            "malformed_body",
        ),
        (
            "/v1/metrics/ingest",
            b'{"metrics": 3}',
            {"Content-Type": "application/json"},
            400,
            "malformed_body",
        ),
        (
            "/v1/metrics/ingest",
            b"\xff\xff\xff",
            {"Content-Type": "application/x-protobuf"},
            400,
            "malformed_body",
        ),
        (
            "/v1/metrics/ingest",
            b"{}",
            {"Content-Type": "text/plain"},
            415,
            "unsupported_media_type",
        ),
        (
            "/v1/metrics/ingest",
            b"{}",
            {"Content-Type": "application/json", "Content-Encoding": "br"},
            415,
            "unsupported_media_type",
        ),
        (
            "/v1/metrics/ingest",
            b"\x1f\x8b garbage",
            {"Content-Type": "application/json", "Content-Encoding": "gzip"},
            400,
            "malformed_body",
        ),
        ("/api/v1/write", b"not snappy at all", REMOTE_WRITE_HEADERS, 400, "malformed_body"),
        (
            "/api/v1/write",
            bytes(cramjam.snappy.compress_raw(b"\xff\xff")),
            REMOTE_WRITE_HEADERS,
            400,
            "malformed_body",
        ),
    ],
)
def test_malformed_requests_get_their_documented_status(
    live: str,
    issued: IssuedKey,
    path: str,
    content: bytes,
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    with client(live, issued.key) as http:
        response = http.post(path, content=content, headers=headers)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def test_oversize_bodies_and_batches_get_413(bus_settings: Settings, issued: IssuedKey) -> None:
    ingest = bus_settings.ingest.model_copy(
        update={"max_body_bytes": 4096, "max_batch_samples": 10}
    )
    small = bus_settings.model_copy(update={"ingest": ingest})
    t = now_s()
    many = {"metrics": [{"name": "m", "value": i, "timestamp": t} for i in range(11)]}
    with api_server(small) as base_url, client(base_url, issued.key) as http:
        big = http.post(
            "/v1/metrics/ingest", content=b" " * 5000, headers={"Content-Type": "application/json"}
        )
        bomb = http.post(
            "/v1/metrics/ingest",
            content=gzip.compress(b" " * 100_000),
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
        too_many = http.post("/v1/metrics/ingest", json=many)
    for response in (big, bomb, too_many):
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "batch_too_large"


def test_rate_limit_answers_429_with_retry_after(bus_settings: Settings, issued: IssuedKey) -> None:
    ingest = bus_settings.ingest.model_copy(update={"requests_per_s": 0.2, "request_burst": 2.0})
    limited = bus_settings.model_copy(update={"ingest": ingest})
    body = {"metrics": [{"name": "m", "value": 1, "timestamp": now_s()}]}
    with api_server(limited) as base_url, client(base_url, issued.key) as http:
        statuses = [http.post("/v1/metrics/ingest", json=body) for _ in range(3)]
    assert [r.status_code for r in statuses] == [202, 202, 429]
    assert statuses[2].json()["error"]["code"] == "rate_limited"
    assert 1 <= int(statuses[2].headers["retry-after"]) <= 5


def test_sample_rate_limit_and_oversize_burst(bus_settings: Settings, issued: IssuedKey) -> None:
    ingest = bus_settings.ingest.model_copy(update={"samples_per_s": 1.0, "sample_burst": 5.0})
    limited = bus_settings.model_copy(update={"ingest": ingest})
    t = now_s()
    three = {"metrics": [{"name": "m", "value": i, "timestamp": t} for i in range(3)]}
    six = {"metrics": [{"name": "m", "value": i, "timestamp": t} for i in range(6)]}
    with api_server(limited) as base_url, client(base_url, issued.key) as http:
        first = http.post("/v1/metrics/ingest", json=three)
        second = http.post("/v1/metrics/ingest", json=three)
        never = http.post("/v1/metrics/ingest", json=six)
    assert first.status_code == 202
    assert second.status_code == 429
    assert int(second.headers["retry-after"]) >= 1
    assert never.status_code == 413


def test_backlog_over_its_bound_answers_503(bus_settings: Settings, issued: IssuedKey) -> None:
    bounded = bus_settings.model_copy(
        update={"bus": bus_settings.bus.model_copy(update={"max_backlog": 1})}
    )
    t = now_s()
    with api_server(bounded) as base_url, client(base_url, issued.key) as http:  # no writer
        for i in range(2):
            body = {"metrics": [{"name": "m", "value": i, "timestamp": t + i}]}
            assert http.post("/v1/metrics/ingest", json=body).status_code == 202
        time.sleep(0.3)  # the backlog figure is refreshed every 250 ms
        refused = http.post("/v1/metrics/ingest", json=body)
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "backlog_full"
    assert int(refused.headers["retry-after"]) >= 1


@pytest.fixture(scope="module")
def fuzz_target(settings: Settings, database_url: str) -> Iterator[tuple[str, str]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        issued = tenants.create_tenant(conn, f"fuzz-{uuid.uuid4().hex[:12]}")
    bus = settings.bus.model_copy(update={"stream_prefix": f"test:{uuid.uuid4().hex[:12]}"})
    with api_server(settings.model_copy(update={"bus": bus})) as base_url:
        yield base_url, issued.key


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


METRIC_LIKE = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["cpu", "bad-name", "", "a:b"]) | JSON_VALUES,
        "labels": st.dictionaries(st.text(max_size=5), st.text(max_size=5)) | JSON_VALUES,
        "value": st.floats() | st.sampled_from(["NaN", "+Inf", "x"]) | JSON_VALUES,
        "timestamp": st.floats() | st.integers() | JSON_VALUES,
    },
)


@hypothesis_settings(
    # A fraction of the profile's examples (tests/conftest.py): each one is a request.
    max_examples=hypothesis_settings.default.max_examples // 7,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    path=st.sampled_from(["/v1/metrics/ingest", "/api/v1/write"]),
    content_type=st.sampled_from(["application/json", "application/x-protobuf", "text/plain"]),
    encoding=st.sampled_from(["identity", "gzip", "snappy", None]),
    body=st.one_of(
        st.binary(max_size=300),
        JSON_VALUES.map(lambda v: json.dumps({"metrics": [v]}).encode()),
        st.lists(METRIC_LIKE, max_size=5).map(lambda v: json.dumps({"metrics": v}).encode()),
    ),
)
def test_nothing_malformed_produces_a_500(
    fuzz_target: tuple[str, str],
    path: str,
    content_type: str,
    encoding: str | None,
    body: bytes,
) -> None:
    base_url, key = fuzz_target
    headers = {"Content-Type": content_type, "Authorization": f"Bearer {key}"}
    if encoding:
        headers["Content-Encoding"] = encoding
    response = httpx.post(base_url + path, content=body, headers=headers)
    assert response.status_code in (202, 204, 400, 413, 415), response.text
