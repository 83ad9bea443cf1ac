"""The simulated host: deterministic, Prometheus-valid, counters and histograms that behave."""

from __future__ import annotations

from agentsim.host import Host
from ingest.validation import LABEL_NAME, METRIC_NAME


def series_values(host: Host, steps: int) -> list[dict[tuple, float]]:
    return [
        {(s.name, tuple(sorted(s.labels.items()))): s.value for s in host.collect(1e9 + 10 * i)}
        for i in range(steps)
    ]


def test_same_seed_same_samples_other_seed_other_samples() -> None:
    assert series_values(Host(3, seed=7), 5) == series_values(Host(3, seed=7), 5)
    assert series_values(Host(3, seed=7), 5) != series_values(Host(3, seed=8), 5)


def test_names_follow_prometheus_rules_and_a_batch_is_agent_sized() -> None:
    samples = Host(0, seed=1).collect(1e9)
    assert 100 <= len(samples) <= 1000
    assert len({(s.name, tuple(sorted(s.labels.items()))) for s in samples}) == len(samples)
    for sample in samples:
        assert METRIC_NAME.fullmatch(sample.name)
        assert all(LABEL_NAME.fullmatch(name) for name in sample.labels)


def test_counters_only_drop_at_restarts_and_histograms_are_cumulative() -> None:
    host = Host(5, seed=11)
    previous: dict[tuple, float] = {}
    restarts_seen = 0
    for step in range(400):
        restarts_before = host.restarts
        values = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for s in host.collect(1e9 + 10 * step)
        }
        dropped = [
            key
            for key, value in values.items()
            if key[0].endswith(("_total", "_bucket", "_count")) and value < previous.get(key, 0)
        ]
        if host.restarts == restarts_before:
            assert dropped == [], f"counter went down without a restart at step {step}"
        else:
            restarts_seen += 1
            assert dropped, "a restart resets the service's counters"
        previous = values
        buckets: dict[tuple, list[tuple[float, float]]] = {}
        for (name, labels), value in values.items():
            if name == "http_request_duration_seconds_bucket":
                rest = tuple(pair for pair in labels if pair[0] != "le")
                buckets.setdefault(rest, []).append((float(dict(labels)["le"]), value))
        for rest, series in buckets.items():
            counts = [count for _, count in sorted(series)]
            assert counts == sorted(counts)
            assert counts[-1] == values["http_request_duration_seconds_count", rest]
    assert restarts_seen > 0  # 400 intervals at 0.2 % each: seed 11 does restart
