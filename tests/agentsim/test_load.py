"""Load mode: every round re-stamps every series forward in time, and the sender is polite."""

from __future__ import annotations

import asyncio
import re
import time
from collections import defaultdict

import cramjam
import pytest

from agentsim.load import LoadBodies, Shape, run_load
from ingest.wire import ingest_pb2, remote_pb2
from tests.agentsim.receiver import Receiver, error

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def decode(shape: Shape, body: bytes) -> tuple[str, list[tuple[tuple[str, ...], float, float]]]:
    """(batch id, [(series key, value, timestamp in seconds)]) of a load body."""
    if shape == "agent":
        batch = ingest_pb2.MetricBatch.FromString(body)
        return batch.batch_id, [
            ((m.name, *sorted(f"{k}={v}" for k, v in m.labels.items())), m.value, m.timestamp)
            for m in batch.metrics
        ]
    request = remote_pb2.WriteRequest.FromString(bytes(cramjam.snappy.decompress_raw(body)))
    return "", [
        (tuple(f"{label.name}={label.value}" for label in ts.labels), s.value, s.timestamp / 1e3)
        for ts in request.timeseries
        for s in ts.samples
    ]


@pytest.mark.parametrize(("shape", "batch_samples"), [("agent", 300), ("remote_write", 700)])
def test_every_round_moves_every_series_forward_within_the_window(
    shape: Shape, batch_samples: int
) -> None:
    bodies = LoadBodies(shape, series=2_000, batch_samples=batch_samples, seed=3)
    assert len(bodies) == -(-2_000 // batch_samples)
    history: dict[tuple[str, ...], list[tuple[float, float]]] = defaultdict(list)
    ids = set()
    for round_ in range(3):
        for slot in range(len(bodies)):
            # Rendered back to back faster than the clock ticks: times must still increase.
            now = time.time()
            body, samples = bodies.render(slot, now)
            batch_id, decoded = decode(shape, body)
            assert len(decoded) == samples
            ids.add(batch_id)
            for key, value, stamp in decoded:
                history[key].append((stamp, value))
                assert now - 300 < stamp <= now + 0.01 * (round_ + 1)
    assert len(history) == 2_000 and all(len(points) == 3 for points in history.values())
    for points in history.values():
        assert [stamp for stamp, _ in points] == sorted({stamp for stamp, _ in points})
        assert [value for _, value in points] == sorted({value for _, value in points})
    if shape == "agent":
        assert len(ids) == 3 * len(bodies) and all(re.fullmatch("[0-9a-f]{32}", i) for i in ids)
    name, *labels = next(iter(history))
    assert METRIC_NAME.fullmatch(name.removeprefix("__name__="))
    assert all(LABEL_NAME.fullmatch(label.split("=", 1)[0]) for label in labels)


def test_the_same_seed_gives_the_same_values() -> None:
    def values(seed: int) -> list[float]:
        body, _ = LoadBodies("agent", 100, 100, seed).render(0, time.time())
        return [value for _, value, _ in decode("agent", body)[1]]

    assert values(1) == values(1) != values(2)


@pytest.mark.parametrize(
    ("shape", "path", "status"),
    [("agent", "/v1/metrics/ingest", 202), ("remote_write", "/api/v1/write", 204)],
)
def test_load_runs_against_a_server_and_counts_what_it_accepted(
    receiver: Receiver, shape: Shape, path: str, status: int
) -> None:
    stats = asyncio.run(
        run_load(
            receiver.base_url,
            "load-key",
            shape=shape,
            series=3_000,
            batch_samples=1_000,
            concurrency=3,
            duration_s=0.5,
        )
    )
    received = receiver.received
    assert stats.requests == len(received) > 3 and stats.statuses == {status: len(received)}
    assert stats.samples_sent == stats.samples_accepted == sum(r.samples for r in received)
    assert stats.accepted_per_s > 0 and stats.errors == {}
    assert {r.path for r in received} == {path}
    headers = received[0].headers
    assert headers["authorization"] == "Bearer load-key"
    assert headers["content-type"] == "application/x-protobuf"
    if shape == "remote_write":
        assert headers["content-encoding"] == "snappy"
        assert headers["x-prometheus-remote-write-version"] == "0.1.0"
    else:
        assert len({r.batch_id for r in received}) == len(received), "fresh id per request"


def test_load_waits_out_retry_after(receiver: Receiver) -> None:
    receiver.answer = lambda request: error(429, "rate_limited", retry_after_s=1)
    started = time.monotonic()
    stats = asyncio.run(
        run_load(receiver.base_url, "k", series=10, batch_samples=10, concurrency=2, duration_s=0.3)
    )
    assert time.monotonic() - started >= 1.0
    assert stats.requests == 2 and stats.errors == {429: 2} and stats.samples_accepted == 0
