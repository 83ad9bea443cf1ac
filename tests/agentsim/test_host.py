"""The simulated host: deterministic, Prometheus-valid, counters and histograms that behave."""

from __future__ import annotations

import re

from agentsim.host import Host, Sample

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
COUNTER_SUFFIXES = ("_total", "_bucket", "_count", "_sum")

Key = tuple[str, tuple[tuple[str, str], ...]]


def keyed(samples: list[Sample]) -> dict[Key, float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in samples}


def run(host: Host, steps: int) -> list[dict[Key, float]]:
    return [keyed(host.collect(1e9 + 10 * i)) for i in range(steps)]


def test_same_seed_same_samples_other_seed_other_samples() -> None:
    assert run(Host(3, seed=7), 5) == run(Host(3, seed=7), 5)
    assert run(Host(3, seed=7), 5) != run(Host(3, seed=8), 5)
    assert run(Host(3, seed=7), 5) != run(Host(4, seed=7), 5)


def test_names_are_valid_series_unique_and_a_batch_is_agent_sized() -> None:
    for index in range(12):
        samples = Host(index, seed=1).collect(1e9)
        assert 100 <= len(samples) <= 300
        assert len(keyed(samples)) == len(samples), "every series once per collection"
        for sample in samples:
            assert METRIC_NAME.fullmatch(sample.name), sample.name
            assert all(LABEL_NAME.fullmatch(name) for name in sample.labels), sample.labels
            assert sample.labels["host"] == f"host-{index:05d}" and sample.labels["region"]
            assert sample.timestamp == 1e9


def test_counters_only_drop_at_restarts_and_histograms_are_cumulative() -> None:
    host = Host(5, seed=13)
    previous: dict[Key, float] = {}
    restarts_seen = 0
    for step in range(400):
        restarts_before = host.restarts
        values = keyed(host.collect(1e9 + 10 * step))
        dropped = [
            key
            for key, value in values.items()
            if key[0].endswith(COUNTER_SUFFIXES) and value < previous.get(key, 0)
        ]
        if host.restarts == restarts_before:
            assert dropped == [], f"counter went down without a restart at step {step}"
        elif step > 0:
            restarts_seen += 1
            assert dropped, "a restart resets the service's counters"
            assert all(name.startswith("http_") for name, _ in dropped), "node counters go on"
        previous = values
        assert_histograms_cumulative(values)
    assert restarts_seen > 0  # 400 intervals at 0.2 % each: seed 13 restarts twice


def assert_histograms_cumulative(values: dict[Key, float]) -> None:
    buckets: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
    for (name, labels), value in values.items():
        if name == "http_request_duration_seconds_bucket":
            rest = tuple(pair for pair in labels if pair[0] != "le")
            buckets.setdefault(rest, []).append((float(dict(labels)["le"]), value))
    assert buckets
    for rest, series in buckets.items():
        series.sort()
        assert series[-1][0] == float("inf"), "every histogram has a +Inf bucket"
        counts = [count for _, count in series]
        assert counts == sorted(counts), "bucket counts never decrease with le"
        assert counts[-1] == values["http_request_duration_seconds_count", rest]
        assert values["http_request_duration_seconds_sum", rest] >= 0
