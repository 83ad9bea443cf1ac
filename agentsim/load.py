"""Load mode: pre-built batches sent as fast as the server takes them, for benchmarks.

Series and labels are built once; each send only re-stamps timestamps (wall-clock
now, so every series' times increase and stay inside the server's window) and gives
the batch a fresh id, then serializes. Two shapes: agent-sized protobuf batches to
`/v1/metrics/ingest`, and Prometheus remote-write requests to `/api/v1/write`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

import cramjam
import httpx

from ingest.wire import ingest_pb2, remote_pb2

Shape = Literal["agent", "remote_write"]

_REMOTE_WRITE_HEADERS = {
    "Content-Type": "application/x-protobuf",
    "Content-Encoding": "snappy",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}


@dataclass
class LoadStats:
    """What a load run sent and what the server accepted."""

    shape: str
    series: int
    batch_samples: int
    requests: int = 0
    samples_sent: int = 0
    samples_accepted: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    elapsed_s: float = 0.0

    @property
    def accepted_per_s(self) -> float:
        """Samples the server accepted per second of the run."""
        return self.samples_accepted / self.elapsed_s if self.elapsed_s else 0.0


def _labels(index: int) -> tuple[str, dict[str, str]]:
    """Series `index` of the load set: 100 metric names per host, realistic labels."""
    host = index // 100
    return f"node_load_metric_{index % 100:02d}", {
        "host": f"load-{host:06d}",
        "region": ("us-east-1", "eu-west-1", "ap-south-1")[host % 3],
        "service": ("checkout", "search", "auth", "billing")[host // 3 % 4],
        "env": "prod",
    }


class _AgentBatches:
    """Agent-shaped protobuf batches, one per slice of `batch_samples` series."""

    def __init__(self, series: int, batch_samples: int) -> None:
        self.batches = []
        for start in range(0, series, batch_samples):
            batch = ingest_pb2.MetricBatch()
            for index in range(start, min(series, start + batch_samples)):
                name, labels = _labels(index)
                batch.metrics.add(name=name, labels=labels, value=float(index))
            self.batches.append(batch)
        self.last_us = [0] * len(self.batches)
        self.path = "/v1/metrics/ingest"
        self.headers = {"Content-Type": "application/x-protobuf"}

    def body(self, number: int) -> tuple[bytes, int]:
        slot = number % len(self.batches)
        batch = self.batches[slot]
        self.last_us[slot] = max(time.time_ns() // 1000, self.last_us[slot] + 1)
        now = self.last_us[slot] / 1e6
        for metric in batch.metrics:
            metric.timestamp = now
            metric.value += 1.0
        batch.batch_id = uuid.uuid4().hex
        return batch.SerializeToString(), len(batch.metrics)


class _RemoteWriteBatches:
    """Remote-write requests of `batch_samples` series with one sample each."""

    def __init__(self, series: int, batch_samples: int) -> None:
        self.requests = []
        for start in range(0, series, batch_samples):
            request = remote_pb2.WriteRequest()
            for index in range(start, min(series, start + batch_samples)):
                name, labels = _labels(index)
                timeseries = request.timeseries.add()
                timeseries.labels.add(name="__name__", value=name)
                for key, value in sorted(labels.items()):
                    timeseries.labels.add(name=key, value=value)
                timeseries.samples.add(value=float(index))
            self.requests.append(request)
        self.last_ms = [0] * len(self.requests)
        self.path = "/api/v1/write"
        self.headers = _REMOTE_WRITE_HEADERS

    def body(self, number: int) -> tuple[bytes, int]:
        slot = number % len(self.requests)
        request = self.requests[slot]
        self.last_ms[slot] = now_ms = max(time.time_ns() // 1_000_000, self.last_ms[slot] + 1)
        for timeseries in request.timeseries:
            sample = timeseries.samples[0]
            sample.timestamp = now_ms
            sample.value += 1.0
        payload = bytes(cramjam.snappy.compress_raw(request.SerializeToString()))
        return payload, len(request.timeseries)


async def run_load(
    base_url: str,
    api_key: str,
    *,
    shape: Shape = "agent",
    series: int = 100_000,
    batch_samples: int | None = None,
    concurrency: int = 8,
    duration_s: float = 60.0,
) -> LoadStats:
    """Send pre-built batches over `series` distinct series for `duration_s` seconds.

    `batch_samples` defaults to 500 for the agent shape and 10,000 for remote write.
    Each of `concurrency` senders takes the next batch in turn; a 429 or 503 makes
    that sender wait for Retry-After. A series' timestamps strictly increase.
    """
    size = batch_samples or (500 if shape == "agent" else 10_000)
    batches = _AgentBatches(series, size) if shape == "agent" else _RemoteWriteBatches(series, size)
    stats = LoadStats(shape=shape, series=series, batch_samples=size)
    headers = {**batches.headers, "Authorization": f"Bearer {api_key}"}
    counter = iter(range(1 << 62))
    started = time.monotonic()
    deadline = started + duration_s
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def sender(client: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline:
            body, samples = batches.body(next(counter))
            try:
                response = await client.post(batches.path, content=body, headers=headers)
            except httpx.HTTPError:
                stats.statuses[0] += 1
                await asyncio.sleep(0.5)
                continue
            stats.requests += 1
            stats.samples_sent += samples
            stats.statuses[response.status_code] += 1
            if response.status_code == 202:
                stats.samples_accepted += response.json()["accepted"]
            elif response.status_code == 204:
                stats.samples_accepted += samples
            elif response.status_code in (429, 503):
                await asyncio.sleep(float(response.headers.get("retry-after", "1")))

    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
        await asyncio.gather(*(sender(client) for _ in range(concurrency)))
    stats.elapsed_s = time.monotonic() - started
    return stats
