"""Pre-encoded bodies decode to exactly what the protobuf classes would have built."""

from __future__ import annotations

import numpy as np
import pytest

from agentsim.template import AgentBatchTemplate, RemoteWriteTemplate, Series
from ingest.wire import ingest_pb2, remote_pb2

SERIES: list[Series] = [
    ("up", {}),
    ("http_requests_total", {"job": "web", "status": "200", "path": "/a"}),
    ("node_load1", {"host": "h" * 300, "region": "eu-west-1"}),  # multi-byte length varints
]


def test_an_agent_batch_renders_values_timestamp_and_id() -> None:
    template = AgentBatchTemplate(SERIES)
    for round_, stamp in enumerate([1_800_000_000.123456, 1_800_000_010.5]):
        values = np.array([0.0, -1.5e300, float(round_)])
        batch = ingest_pb2.MetricBatch.FromString(template.render(values, stamp, f"{round_:032x}"))
        assert batch.batch_id == f"{round_:032x}"
        assert [(m.name, dict(m.labels)) for m in batch.metrics] == SERIES
        assert [m.value for m in batch.metrics] == list(values)
        assert {m.timestamp for m in batch.metrics} == {stamp}


def test_a_remote_write_request_renders_values_and_timestamp() -> None:
    template = RemoteWriteTemplate(SERIES)
    values = np.array([1.0, 2.0, float("inf")])
    request = remote_pb2.WriteRequest.FromString(template.render(values, 1_800_000_000_123))
    for timeseries, (name, labels), value in zip(request.timeseries, SERIES, values, strict=True):
        pairs = [(label.name, label.value) for label in timeseries.labels]
        assert pairs == sorted({"__name__": name, **labels}.items())
        assert [(s.value, s.timestamp) for s in timeseries.samples] == [(value, 1_800_000_000_123)]


def test_misuse_is_refused() -> None:
    with pytest.raises(ValueError):
        AgentBatchTemplate(SERIES).render(np.zeros(3), 1.0, "short-id")
    with pytest.raises(ValueError):
        AgentBatchTemplate(SERIES).render(np.zeros(2), 1.0, "0" * 32)
    with pytest.raises(ValueError):
        RemoteWriteTemplate(SERIES).render(np.zeros(3), 1 << 42)  # beyond 2109
    with pytest.raises(ValueError):
        RemoteWriteTemplate([])
