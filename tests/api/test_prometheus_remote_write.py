"""A real Prometheus scrapes itself and remote-writes into Vigil, end to end."""

from __future__ import annotations

import json
import math
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from storage.tenants import IssuedKey
from tests.live_servers import api_server, free_port, writers
from tests.querylang.prometheus_reference import log_tail, stop
from vigil.settings import Settings

PROMETHEUS = Path("/usr/bin/prometheus")
DEADLINE_S = 60.0
MIN_PROMETHEUS_METRICS = 20

Sample = tuple[str, dict[str, str], float, float]


def stored(conn: psycopg.Connection, tenant_id: uuid.UUID) -> list[Sample]:
    """Every sample of a tenant as (metric, labels, Unix seconds, value), oldest first."""
    rows = conn.execute(
        """
        SELECT s.metric, s.labels, extract(epoch FROM r.time)::float8, r.value
        FROM vigil.samples r JOIN vigil.series s ON s.id = r.series_id
        WHERE s.tenant_id = %s
        ORDER BY r.time
        """,
        (tenant_id,),
    ).fetchall()
    return [(metric, labels, t, value) for metric, labels, t, value in rows]


def prometheus_config(scrape_port: int, write_url: str, key: str) -> str:
    """A prometheus.yml (as JSON, which is YAML) scraping itself and remote-writing to Vigil."""
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "prometheus",
                "static_configs": [{"targets": [f"127.0.0.1:{scrape_port}"]}],
            }
        ],
        "remote_write": [
            {
                "url": write_url,
                # Prometheus 2.42 sends `Authorization: Bearer <credentials>` (type defaults).
                "authorization": {"credentials": key},
                "queue_config": {
                    "batch_send_deadline": "1s",
                    "min_backoff": "100ms",
                    "max_backoff": "1s",
                },
                # Metadata-only requests (no samples) every second, not every minute.
                "metadata_config": {"send_interval": "1s"},
            }
        ],
    }
    return json.dumps(config, indent=2)


@contextmanager
def prometheus(tmp_path: Path, config: str, port: int) -> Iterator[Path]:
    """Run Prometheus with `config` on 127.0.0.1:port; yield its log file, stop it after."""
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(config)
    log = tmp_path / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(PROMETHEUS),
                f"--config.file={config_file}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=info",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            yield log
        finally:
            stop(process)


def last_value(samples: list[Sample], metric: str) -> float | None:
    """The newest value of `metric` (one series each here: Prometheus has one remote
    queue), skipping the NaN stale markers Prometheus may send as it shuts down."""
    values = [v for m, _, _, v in samples if m == metric and not math.isnan(v)]
    return values[-1] if values else None


@dataclass(frozen=True)
class Progress:
    """What Vigil has stored so far of Prometheus's remote writes."""

    samples: int
    up: bool
    prometheus_metrics: int
    metadata_sent: bool

    @classmethod
    def of(cls, samples: list[Sample], target: dict[str, str]) -> Progress:
        """Progress as shown by the stored samples of a scrape target."""
        return cls(
            samples=len(samples),
            up=any(m == "up" and ls == target and v == 1.0 for m, ls, _, v in samples),
            prometheus_metrics=len({m for m, _, _, _ in samples if m.startswith("prometheus_")}),
            # Prometheus counts metadata it sent with a 2xx answer; it scrapes that count too.
            metadata_sent=(last_value(samples, "prometheus_remote_storage_metadata_total") or 0)
            > 0,
        )

    @property
    def done(self) -> bool:
        """Prometheus's own series, `up` and its metadata have all arrived."""
        return self.up and self.metadata_sent and self.prometheus_metrics >= MIN_PROMETHEUS_METRICS


def test_prometheus_scrapes_itself_and_remote_writes_into_vigil(
    bus_settings: Settings, issued: IssuedKey, conn: psycopg.Connection, tmp_path: Path
) -> None:
    if not PROMETHEUS.exists():
        pytest.fail(f"{PROMETHEUS} is missing; `make test` installs it via ops/install")
    port = free_port()
    instance = f"127.0.0.1:{port}"
    target = {"job": "prometheus", "instance": instance}

    # Prometheus's scrape manager waits ~5 s before its first scrape; the rest is quick.
    with api_server(bus_settings) as base_url, writers(bus_settings):
        config = prometheus_config(port, f"{base_url}/api/v1/write", issued.key)
        with prometheus(tmp_path, config, port) as log:
            deadline = time.monotonic() + DEADLINE_S
            progress = Progress.of(stored(conn, issued.tenant.id), target)
            while not progress.done:
                assert time.monotonic() < deadline, (
                    f"after {DEADLINE_S:.0f}s: {progress}; Prometheus log:\n{log_tail(log)}"
                )
                time.sleep(0.5)
                progress = Progress.of(stored(conn, issued.tenant.id), target)

    # Vigil answers 400 for samples it rejects; Prometheus logs those as non-recoverable.
    assert "non-recoverable error" not in log.read_text(errors="replace"), log_tail(log)
    samples = stored(conn, issued.tenant.id)
    for counter in (
        "prometheus_remote_storage_samples_failed_total",
        "prometheus_remote_storage_metadata_failed_total",
    ):
        assert last_value(samples, counter) == 0.0, f"{counter}; Prometheus log:\n{log_tail(log)}"
    # Every scraped series carries the target labels Prometheus attaches; `up` only those.
    assert all(
        labels.get("job") == "prometheus" and labels.get("instance") == instance
        for _, labels, _, _ in samples
    )
    assert {tuple(sorted(ls.items())) for m, ls, _, _ in samples if m == "up"} == {
        tuple(sorted(target.items()))
    }
    # Timestamps are Prometheus's scrape times: recent, not in the future.
    now = time.time()
    assert all(now - DEADLINE_S - 30 < t <= now + 1 for _, _, t, _ in samples)
