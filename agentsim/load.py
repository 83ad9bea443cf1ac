"""Load mode: pre-built batches sent as fast as the server takes them, for benchmarks.

The series are encoded once (see `template`); each send only writes new values, a new
timestamp (wall-clock now, so every series' times increase and stay inside the server's
window) and, for the agent shape, a fresh batch id. Two shapes: agent-sized protobuf
batches to `/v1/metrics/ingest`, and snappy-compressed Prometheus remote-write requests
to `/api/v1/write`.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

import cramjam
import httpx
import numpy as np
import numpy.typing as npt

from agentsim.backoff import retry_after_s
from agentsim.clock import SYSTEM_CLOCK, Clock, pause
from agentsim.template import AgentBatchTemplate, RemoteWriteTemplate, Series

Shape = Literal["agent", "remote_write"]

DEFAULT_BATCH_SAMPLES: dict[Shape, int] = {"agent": 500, "remote_write": 10_000}
INGEST_PATH = "/v1/metrics/ingest"
REMOTE_WRITE_PATH = "/api/v1/write"
_REMOTE_WRITE_HEADERS = {
    "Content-Type": "application/x-protobuf",
    "Content-Encoding": "snappy",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}
_AGENT_HEADERS = {"Content-Type": "application/x-protobuf"}
# Pauses after failures that carry no Retry-After, so a sick server is not hammered.
_ERROR_PAUSE_S = 0.1
_NETWORK_ERROR_PAUSE_S = 0.5
_DEFAULT_RETRY_AFTER_S = 1.0


@dataclass
class LoadStats:
    """What a load run sent and what the server accepted; status 0 counts network errors."""

    shape: Shape
    series: int
    batch_samples: int
    concurrency: int
    requests: int = 0
    samples_sent: int = 0
    samples_accepted: int = 0
    samples_rejected: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    elapsed_s: float = 0.0

    @property
    def accepted_per_s(self) -> float:
        """Samples the server accepted per second of the run."""
        return self.samples_accepted / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def sent_per_s(self) -> float:
        """Samples sent (answered or not) per second of the run."""
        return self.samples_sent / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def errors(self) -> dict[int, int]:
        """Requests by status for every answer that was not a success (0: network error)."""
        return {status: n for status, n in sorted(self.statuses.items()) if not 200 <= status < 300}


def series_labels(index: int) -> Series:
    """Series `index` of the load set: 100 metric names per host, realistic labels."""
    host = index // 100
    return f"node_load_metric_{index % 100:02d}", {
        "host": f"load-{host:06d}",
        "region": ("us-east-1", "eu-west-1", "ap-south-1")[host % 3],
        "service": ("checkout", "search", "auth", "billing")[host // 3 % 4],
        "env": "prod",
    }


class LoadBodies:
    """The load set cut into request bodies; `render(slot, now)` stamps one for sending.

    Each series lives in exactly one slot, and a slot's timestamps strictly increase
    (now, or one tick after the slot's previous one if the clock has not moved on), so
    every series' timestamps do too, however fast the slots are rendered.
    """

    def __init__(self, shape: Shape, series: int, batch_samples: int, seed: int = 0) -> None:
        if series < 1 or batch_samples < 1:
            raise ValueError("series and batch_samples must be at least 1")
        self.shape = shape
        self.path = INGEST_PATH if shape == "agent" else REMOTE_WRITE_PATH
        self.headers = _AGENT_HEADERS if shape == "agent" else _REMOTE_WRITE_HEADERS
        rng = np.random.default_rng(seed)
        self._templates: list[AgentBatchTemplate | RemoteWriteTemplate] = []
        self._values: list[npt.NDArray[np.float64]] = []
        self._steps: list[npt.NDArray[np.float64]] = []
        for start in range(0, series, batch_samples):
            members = [series_labels(i) for i in range(start, min(series, start + batch_samples))]
            template = (
                AgentBatchTemplate(members) if shape == "agent" else RemoteWriteTemplate(members)
            )
            self._templates.append(template)
            # Counter-like series: each round adds a seeded per-series increment.
            self._values.append(rng.integers(0, 1_000, len(members)).astype(np.float64))
            self._steps.append(rng.integers(1, 50, len(members)).astype(np.float64))
        # Last timestamp per slot: microseconds (agent shape) or milliseconds (remote write).
        self._last = [0] * len(self._templates)

    def __len__(self) -> int:
        return len(self._templates)

    def render(self, slot: int, now_s: float) -> tuple[bytes, int]:
        """Body for `slot` stamped at `now_s` (Unix seconds), and how many samples it holds."""
        template = self._templates[slot]
        values = self._values[slot]
        values += self._steps[slot]
        if isinstance(template, AgentBatchTemplate):
            self._last[slot] = stamp = max(int(now_s * 1e6), self._last[slot] + 1)
            body = template.render(values, stamp / 1e6, uuid.uuid4().hex)
        else:
            self._last[slot] = stamp = max(int(now_s * 1e3), self._last[slot] + 1)
            body = bytes(cramjam.snappy.compress_raw(template.render(values, stamp)))
        return body, template.samples


async def run_load(
    base_url: str,
    api_key: str,
    *,
    shape: Shape = "agent",
    series: int = 100_000,
    batch_samples: int | None = None,
    concurrency: int = 8,
    duration_s: float = 60.0,
    seed: int = 0,
    stop: asyncio.Event | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> LoadStats:
    """Send pre-built batches over `series` distinct series to `base_url` for `duration_s`.

    - `api_key`: sent as `Authorization: Bearer <api_key>`.
    - `shape`: "agent" posts protobuf `MetricBatch`es to /v1/metrics/ingest; "remote_write"
      posts snappy-compressed Prometheus `WriteRequest`s to /api/v1/write.
    - `batch_samples`: samples per request; None means 500 (agent) or 10,000 (remote write).
    - `concurrency`: requests in flight at once; each sender posts its next body as soon
      as the previous one is answered, and waits out Retry-After after a 429 or 503.
    - `seed`: makes the sample values reproducible; `stop` ends the run early.
    Every request covers the next slice of the series in turn, so all series advance.
    """
    size = batch_samples or DEFAULT_BATCH_SAMPLES[shape]
    bodies = LoadBodies(shape, series, size, seed)
    stats = LoadStats(shape=shape, series=series, batch_samples=size, concurrency=concurrency)
    headers = {**bodies.headers, "Authorization": f"Bearer {api_key}"}
    stop = stop or asyncio.Event()
    turns = itertools.count()
    started = clock.monotonic()
    until = started + duration_s

    async def sender(client: httpx.AsyncClient) -> None:
        while not stop.is_set() and clock.monotonic() < until:
            body, samples = bodies.render(next(turns) % len(bodies), clock.time())
            try:
                response = await client.post(bodies.path, content=body, headers=headers)
            except httpx.HTTPError:
                stats.statuses[0] += 1
                await pause(clock, _NETWORK_ERROR_PAUSE_S, stop)
                continue
            stats.requests += 1
            stats.samples_sent += samples
            status = response.status_code
            stats.statuses[status] += 1
            if status == 202:
                answer = response.json()
                stats.samples_accepted += int(answer["accepted"])
                stats.samples_rejected += int(answer["rejected"])
            elif 200 <= status < 300:
                stats.samples_accepted += samples
            elif status in (429, 503):
                wait = retry_after_s(response)
                await pause(clock, _DEFAULT_RETRY_AFTER_S if wait is None else wait, stop)
            else:
                await pause(clock, _ERROR_PAUSE_S, stop)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
        await asyncio.gather(*(sender(client) for _ in range(concurrency)))
    stats.elapsed_s = clock.monotonic() - started
    return stats
