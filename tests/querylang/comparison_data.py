"""The deterministic data set the PromQL comparison loads into both Prometheus and Vigil.

Two hours of samples from T0 (2023-11-14 22:13:20 UTC) on. Most series are jittered a
few seconds around their scrape grid so that window edges fall between samples; a few
(`host="h1"`, `queue="alpha"`, histogram `instance="a"`, …) sit exactly on the grid so
that instant queries and range steps land exactly on sample timestamps.
"""

from __future__ import annotations

import math
import random
import struct
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from itertools import pairwise
from uuid import UUID

import numpy as np

from storage.samples import SampleBatch, SeriesSamples
from storage.series import SeriesKey

T0_MS = 1_700_000_000_000
T0_S = T0_MS // 1000
SPAN_MS = 2 * 3_600_000
MINUTE_MS = 60_000

# Prometheus's staleness marker: one particular NaN, kept bit for bit in both stores.
STALE_NAN_BITS = 0x7FF0000000000002
STALE_NAN = struct.unpack("<d", struct.pack("<Q", STALE_NAN_BITS))[0]

HISTOGRAM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, math.inf)


@dataclass(frozen=True)
class Series:
    """One series: labels (`__name__` included, sorted) and samples as Unix-ms times and values."""

    labels: tuple[tuple[str, str], ...]
    times_ms: tuple[int, ...]
    values: tuple[float, ...]

    @classmethod
    def of(
        cls, name: str, labels: Mapping[str, str], samples: Sequence[tuple[int, float]]
    ) -> Series:
        """A series named `name` from (ms, value) pairs, which must be in time order."""
        times = tuple(t for t, _ in samples)
        if any(b <= a for a, b in pairwise(times)):
            raise ValueError(f"{name}{labels}: sample times must increase")
        return cls(
            tuple(sorted({**labels, "__name__": name}.items())),
            times,
            tuple(v for _, v in samples),
        )

    @property
    def name(self) -> str:
        """The metric name."""
        return dict(self.labels)["__name__"]

    def key(self) -> SeriesKey:
        """The series' key in Vigil's catalog."""
        return SeriesKey.of(self.name, {k: v for k, v in self.labels if k != "__name__"})


def grid(
    rng: random.Random,
    interval_s: float,
    *,
    start_ms: int = T0_MS,
    end_ms: int = T0_MS + SPAN_MS,
    jitter_ms: int = 0,
) -> list[int]:
    """Sample times every `interval_s` in [start, end], each moved by up to ±jitter_ms."""
    step = round(interval_s * 1000)
    times = []
    for base in range(start_ms, end_ms + 1, step):
        shift = rng.randint(-jitter_ms, jitter_ms) if jitter_ms else 0
        times.append(min(max(base + shift, T0_MS), T0_MS + SPAN_MS))
    return sorted(set(times))


def minutes(ms: int) -> float:
    """Minutes since T0."""
    return (ms - T0_MS) / MINUTE_MS


def _gauges(rng: random.Random) -> Iterator[Series]:
    """Temperatures of six hosts in three regions; NaN, ±Inf and negative values included."""
    hosts = {"h1": "eu", "h2": "eu", "h3": "us", "h4": "us", "h5": "ap", "h6": "ap"}
    for index, (host, region) in enumerate(hosts.items()):
        times = grid(rng, 15, jitter_ms=0 if host == "h1" else 3000)
        samples = []
        for i, t in enumerate(times):
            value = 40 + 10 * math.sin(i / 20 + index) + round(rng.uniform(-1, 1), 3)
            if host == "h3" and i % 40 == 7:
                value = math.nan
            if host == "h4" and i == 100:
                value = math.inf
            if host == "h4" and i == 200:
                value = -math.inf
            if host == "h5":
                value -= 45  # crosses zero: abs, sqrt and ln of negatives
            samples.append((t, value))
        labels = {"host": host, "region": region, "dc": f"{region}-{1 + index % 2}"}
        yield Series.of("node_temperature_celsius", labels, samples)
    # Same hosts, a second gauge for vector-vector arithmetic and matching.
    for index, (host, region) in enumerate(hosts.items()):
        times = grid(rng, 30, jitter_ms=0 if host == "h1" else 5000)
        samples = [(t, 2.0 + index + 0.5 * math.cos(i / 7)) for i, t in enumerate(times)]
        yield Series.of("node_load1", {"host": host, "region": region}, samples)


def _counters(rng: random.Random) -> Iterator[Series]:
    """Request counters: resets on instance i2, instance i4 starting mid-range at 100."""
    for instance in ("i1", "i2", "i3", "i4"):
        for method in ("GET", "POST"):
            for code in ("200", "500"):
                if instance == "i4" and code == "500":
                    continue
                start = T0_MS + 50 * MINUTE_MS if instance == "i4" else T0_MS
                times = grid(rng, 15, start_ms=start, jitter_ms=0 if instance == "i1" else 2000)
                value = 100.0 if instance == "i4" else 0.0
                samples = []
                for i, t in enumerate(times):
                    if instance == "i2" and i in (160, 300):
                        value = float(rng.randint(0, 3))  # a reset, to 0 sometimes
                    elif i:
                        value += rng.randint(0, 25) if code == "200" else rng.randint(0, 2)
                    samples.append((t, value))
                labels = {"job": "api", "instance": instance, "method": method, "code": code}
                yield Series.of("http_requests_total", labels, samples)
    # Large values: float precision of rate() near 1e15.
    times = grid(rng, 15, jitter_ms=1500)
    total = 1e15
    samples = []
    for t in times:
        total += rng.randint(10_000, 5_000_000)
        samples.append((t, total))
    yield Series.of("net_bytes_total", {"iface": "eth0"}, samples)


def _gaps(rng: random.Random) -> Iterator[Series]:
    """Queue depths with a 10 m gap (longer than the lookback) and a 3 m gap (shorter)."""
    for queue, jitter in (("alpha", 0), ("beta", 4000)):
        samples = []
        for i, t in enumerate(grid(rng, 15, jitter_ms=jitter)):
            if 30 <= minutes(t) < 40 or (queue == "alpha" and 80 <= minutes(t) < 83):
                continue
            samples.append((t, float((i * 7) % 23)))
        yield Series.of("queue_depth", {"queue": queue}, samples)


def _stale(rng: random.Random) -> Iterator[Series]:
    """Series ending with a remote-write stale marker, some resuming later."""
    # b1 goes stale at 45 m and resumes at 60 m; b2 goes stale at 100 m for good;
    # b3 is stale for 30 s only (shorter than both the lookback and a scrape gap).
    plans = {"b1": ((45, 60),), "b2": ((100, 1_000),), "b3": ((20, 20.5),)}
    for instance, stale_spans in plans.items():
        jitter = 0 if instance == "b1" else 2500
        up: list[tuple[int, float]] = []
        processed: list[tuple[int, float]] = []
        count = 0.0
        marked = False
        for t in grid(rng, 15, jitter_ms=jitter):
            span = next((s for s in stale_spans if s[0] <= minutes(t) < s[1]), None)
            if span is not None:
                if not marked:
                    up.append((t, STALE_NAN))
                    processed.append((t, STALE_NAN))
                    marked = True
                continue
            marked = False
            count += rng.randint(1, 9)
            up.append((t, 1.0))
            processed.append((t, count))
        labels = {"job": "batch", "instance": instance}
        yield Series.of("job_up", labels, up)
        yield Series.of("batch_processed_total", labels, processed)


def _pods(rng: random.Random) -> Iterator[Series]:
    """200 pods: one metric with many label values, for regex matchers."""
    tiers = ("web", "db", "cache")
    for index in range(200):
        labels = {
            "pod": f"pod-{index:03d}",
            "namespace": f"ns-{index % 10}",
            "tier": tiers[index % 3],
        }
        if index % 50 == 0:
            labels["canary"] = "true"
        times = grid(rng, 60, jitter_ms=5000)
        samples = [(t, float(index % 7) + (i % 5) * 0.25) for i, t in enumerate(times)]
        yield Series.of("pod_info", labels, samples)


def _histograms(rng: random.Random) -> Iterator[Series]:
    """Classic histograms (cumulative `le` buckets, `_sum`, `_count`) of four instances.

    Instance c resets at 60 m; instance d never observes anything (quantiles are NaN).
    `legacy_latency_seconds_bucket` lacks the +Inf bucket, which makes quantiles NaN.
    """
    for instance in ("a", "b", "c", "d"):
        times = grid(rng, 30, jitter_ms=0 if instance == "a" else 3000)
        counts = [0.0] * len(HISTOGRAM_BUCKETS)
        total = 0.0
        buckets: list[list[tuple[int, float]]] = [[] for _ in HISTOGRAM_BUCKETS]
        sums: list[tuple[int, float]] = []
        totals: list[tuple[int, float]] = []
        scale = {"a": 0.08, "b": 0.3, "c": 1.2, "d": 0.0}[instance]
        for i, t in enumerate(times):
            if instance == "c" and i == 120:
                counts = [0.0] * len(HISTOGRAM_BUCKETS)
                total = 0.0
            observed = 0 if instance == "d" or i == 0 else rng.randint(3, 40)
            for _ in range(observed):
                latency = rng.lognormvariate(math.log(scale), 0.9)
                total += latency
                for b, bound in enumerate(HISTOGRAM_BUCKETS):
                    if latency <= bound:
                        counts[b] += 1
            for b in range(len(HISTOGRAM_BUCKETS)):
                buckets[b].append((t, counts[b]))
            sums.append((t, total))
            totals.append((t, counts[-1]))
        labels = {"job": "api", "instance": instance}
        for bound, samples in zip(HISTOGRAM_BUCKETS, buckets, strict=True):
            le = "+Inf" if math.isinf(bound) else repr(bound)
            yield Series.of("request_duration_seconds_bucket", {**labels, "le": le}, samples)
        yield Series.of("request_duration_seconds_sum", labels, sums)
        yield Series.of("request_duration_seconds_count", labels, totals)
    times = grid(rng, 30, jitter_ms=2000)
    for bound in (0.1, 1.0, 10.0):
        samples = [(t, float(i * (1 + int(bound)))) for i, t in enumerate(times)]
        labels = {"job": "legacy", "le": repr(bound)}
        yield Series.of("legacy_latency_seconds_bucket", labels, samples)


def _odd_shapes(rng: random.Random) -> Iterator[Series]:
    """Same labels under two names, labels needing escapes, linear growth, versions, hashes."""
    for name in ("dup_alpha", "dup_beta"):
        samples = [(t, float(i % 11)) for i, t in enumerate(grid(rng, 20, jitter_ms=1000))]
        yield Series.of(name, {"job": "dup", "instance": "x"}, samples)
    tricky = {
        "path": 'C:\\temp\\"quoted"',
        "note": "new\nline\ttab",
        "text": "ünïcødé ☃ {curly} =eq, comma",
    }
    samples = [(t, float(i)) for i, t in enumerate(grid(rng, 30, jitter_ms=2000))]
    yield Series.of("escape_test", tricky, samples)
    yield Series.of("escape_test", {"path": "/plain"}, [(t, 2 * v) for t, v in samples])
    for host, mount, slope, jitter in (("h1", "/", 12_345.678, 0), ("h2", "/data", -777.5, 2000)):
        samples = []
        for t in grid(rng, 15, jitter_ms=jitter):
            noise = rng.uniform(-5_000, 5_000) if jitter else 0.0
            samples.append((t, 5e9 + slope * (t - T0_MS) / 1000 + noise))
        yield Series.of("disk_used_bytes", {"host": host, "mount": mount}, samples)
    for index, version in enumerate((1.0, 1.0, 2.0, 2.0, 2.0, 3.5)):
        times = grid(rng, 60, jitter_ms=3000)
        samples = [(t, version + (1.0 if index == 0 and minutes(t) >= 90 else 0.0)) for t in times]
        yield Series.of("build_version", {"instance": f"v{index + 1}"}, samples)
    for instance in ("c1", "c2"):
        value = 1.0
        samples = []
        for t in grid(rng, 15, jitter_ms=1000):
            if rng.random() < (0.05 if instance == "c1" else 0.2):
                value = float(rng.randint(1, 4))
            samples.append((t, value))
        yield Series.of("config_hash", {"instance": instance}, samples)


def _words(rng: random.Random) -> Iterator[Series]:
    """Label values that tell RE2 (Go's regexp) from other regex engines: newlines
    (`.` and `$`), non-ASCII letters and their Unicode simple case folds for `(?i)`
    (ß ~ ẞ but not SS, k ~ Kelvin sign, s ~ long s, the three sigmas), ASCII-only
    `\\w \\d [[:alpha:]]` against `\\pL`; one series without the label."""
    words = (
        "line1\nline2",
        "x\n",
        "x",
        "größe",
        "GRÖßE",
        "GRÖẞE",
        "GRÖSSE",
        "k",
        "K",
        "\u212a",
        "s",
        "S",
        "\u017f",
        "Σ",
        "\u03c3",
        "ς",
        "é",
        "snake_case",
        "٣",
    )
    times = grid(rng, 60)
    for index, word in enumerate(words):
        yield Series.of("regex_probe", {"word": word}, [(t, float(index)) for t in times])
    yield Series.of("regex_probe", {"other": "no word"}, [(t, -1.0) for t in times])


@cache
def dataset() -> tuple[Series, ...]:
    """Every series of the comparison, the same on every call and in every process."""
    rng = random.Random(20231114)
    parts = (_gauges, _counters, _gaps, _stale, _pods, _histograms, _odd_shapes, _words)
    series = tuple(item for part in parts for item in part(rng))
    keys = [item.labels for item in series]
    if len(set(keys)) != len(keys):
        raise ValueError("two series share a label set")
    return series


def vigil_batch(tenant_id: UUID, series: Sequence[Series]) -> SampleBatch:
    """The series as one batch for Vigil's sample writer (µs times, values bit for bit)."""
    return SampleBatch(
        key=f"comparison-{uuid.uuid4()}",
        tenant_id=tenant_id,
        series=[
            SeriesSamples(
                item.key(),
                np.asarray(item.times_ms, dtype=np.int64) * 1000,
                np.asarray(item.values, dtype=np.float64),
            )
            for item in series
        ],
    )
