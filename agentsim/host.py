"""A simulated host: what a node exporter plus an instrumented web service would report.

Deterministic from its seed: gauges wander, counters only grow except when the
simulated process restarts (a counter reset), and request latencies fill cumulative
`le` histogram buckets the way Prometheus client libraries do.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass

REGIONS = ("us-east-1", "eu-west-1", "ap-south-1")
ENDPOINTS = ("/api/checkout", "/api/search", "/api/login", "/healthz")
METHODS = ("GET", "POST")
STATUSES = ("200", "404", "500")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
MOUNTS = ("/", "/var", "/data")
INTERFACES = ("eth0", "lo")
CPU_MODES = ("user", "system", "idle", "iowait")

# Chance per interval that the service restarts and its counters start again from 0.
RESTART_CHANCE = 0.002


@dataclass(frozen=True, slots=True)
class Sample:
    """One observation: metric name, labels, value, Unix seconds."""

    name: str
    labels: dict[str, str]
    value: float
    timestamp: float


class Host:
    """One simulated server; `collect(now)` returns everything it measures at that moment."""

    def __init__(self, index: int, seed: int, cores: int | None = None) -> None:
        self.name = f"host-{index:05d}"
        # A string seed is hashed with SHA-512, so it is stable across processes and runs.
        self._rng = random.Random(f"{seed}:{index}")
        self._base = {"host": self.name, "region": REGIONS[index % len(REGIONS)]}
        self._cores = cores if cores is not None else self._rng.choice((2, 4, 8))
        self._load = 0.0
        self._memory_total = float(self._rng.choice((8, 16, 32, 64)) * 2**30)
        self._memory_used = self._memory_total * self._rng.uniform(0.2, 0.6)
        self._disk_total = {
            mount: float(self._rng.choice((50, 100, 500)) * 2**30) for mount in MOUNTS
        }
        self._disk_used = {
            mount: total * self._rng.uniform(0.1, 0.7) for mount, total in self._disk_total.items()
        }
        self._cpu_seconds = {(core, mode): 0.0 for core in range(self._cores) for mode in CPU_MODES}
        self._net_bytes = {
            (iface, way): 0.0 for iface in INTERFACES for way in ("receive", "transmit")
        }
        self._requests = {
            (endpoint, method, status): 0.0
            for endpoint in ENDPOINTS
            for method in METHODS
            for status in STATUSES
        }
        self._latency = {endpoint: [0.0] * (len(LATENCY_BUCKETS) + 1) for endpoint in ENDPOINTS}
        self._latency_sum = dict.fromkeys(ENDPOINTS, 0.0)
        self._last: float | None = None
        self.restarts = 0

    def collect(self, now: float) -> list[Sample]:
        """Advance the simulation to `now` (Unix seconds) and report every series."""
        elapsed = 10.0 if self._last is None else max(0.0, now - self._last)
        self._last = now
        if self._rng.random() < RESTART_CHANCE:
            self._restart()
        self._advance(elapsed)
        return self._report(now)

    def _restart(self) -> None:
        self.restarts += 1
        self._requests = dict.fromkeys(self._requests, 0.0)
        for endpoint in ENDPOINTS:
            self._latency[endpoint] = [0.0] * (len(LATENCY_BUCKETS) + 1)
            self._latency_sum[endpoint] = 0.0

    def _advance(self, elapsed: float) -> None:
        rng = self._rng
        busy = rng.uniform(0.05, 0.9)
        for core in range(self._cores):
            shares = {"user": busy * 0.7, "system": busy * 0.25, "iowait": busy * 0.05}
            shares["idle"] = 1.0 - sum(shares.values())
            for mode in CPU_MODES:
                self._cpu_seconds[core, mode] += shares[mode] * elapsed
        self._load = 0.8 * self._load + 0.2 * busy * self._cores * rng.uniform(0.8, 1.5)
        self._memory_used = min(
            self._memory_total * 0.95,
            max(self._memory_total * 0.1, self._memory_used * rng.uniform(0.97, 1.03)),
        )
        for mount in MOUNTS:
            grown = self._disk_used[mount] + rng.uniform(0, 2**20) * elapsed
            self._disk_used[mount] = min(self._disk_total[mount], grown)
        for key in self._net_bytes:
            self._net_bytes[key] += rng.uniform(1e3, 1e6) * elapsed
        for endpoint, method, status in self._requests:
            weight = 0.9 if status == "200" else 0.05
            count = rng.expovariate(1.0) * 5 * weight * elapsed
            self._requests[endpoint, method, status] += round(count)
        for endpoint in ENDPOINTS:
            buckets = self._latency[endpoint]
            for _ in range(rng.randint(5, 30)):
                latency = rng.lognormvariate(-3.0, 1.0)
                self._latency_sum[endpoint] += latency
                buckets[bisect.bisect_left(LATENCY_BUCKETS, latency)] += 1

    def _report(self, now: float) -> list[Sample]:
        base = self._base
        out = [
            Sample("node_cpu_seconds_total", {**base, "cpu": str(core), "mode": mode}, value, now)
            for (core, mode), value in self._cpu_seconds.items()
        ]
        for window, factor in (("1", 1.0), ("5", 0.9), ("15", 0.8)):
            out.append(Sample(f"node_load{window}", base, self._load * factor, now))
        out.append(Sample("node_memory_MemTotal_bytes", base, self._memory_total, now))
        out.append(
            Sample(
                "node_memory_MemAvailable_bytes",
                base,
                self._memory_total - self._memory_used,
                now,
            )
        )
        for mount in MOUNTS:
            labels = {**base, "mountpoint": mount}
            out.append(Sample("node_filesystem_size_bytes", labels, self._disk_total[mount], now))
            free = self._disk_total[mount] - self._disk_used[mount]
            out.append(Sample("node_filesystem_avail_bytes", labels, free, now))
        for (iface, way), value in self._net_bytes.items():
            name = f"node_network_{way}_bytes_total"
            out.append(Sample(name, {**base, "device": iface}, value, now))
        for (endpoint, method, status), value in self._requests.items():
            labels = {**base, "endpoint": endpoint, "method": method, "status": status}
            out.append(Sample("http_requests_total", labels, value, now))
        for endpoint in ENDPOINTS:
            labels = {**base, "endpoint": endpoint}
            cumulative = 0.0
            buckets = self._latency[endpoint]
            for bound, count in zip((*LATENCY_BUCKETS, float("inf")), buckets, strict=True):
                cumulative += count
                le = "+Inf" if bound == float("inf") else repr(bound)
                out.append(
                    Sample(
                        "http_request_duration_seconds_bucket",
                        {**labels, "le": le},
                        cumulative,
                        now,
                    )
                )
            out.append(Sample("http_request_duration_seconds_count", labels, cumulative, now))
            out.append(
                Sample(
                    "http_request_duration_seconds_sum", labels, self._latency_sum[endpoint], now
                )
            )
        return out
