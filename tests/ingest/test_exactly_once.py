"""Exactly once under failure: a writer killed mid-stream, the database down for 20 s."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest

from ingest.wire import ingest_pb2
from storage.tenants import IssuedKey
from tests.live_servers import api_server, wait_until, writers
from vigil.services import LocalPostgres, local_services
from vigil.settings import PROJECT_ROOT, Settings

SERIES_PER_BATCH = 50


@dataclass
class Sender:
    """An agent-like client: numbered batches, each retried with its id until it gets 202."""

    base_url: str
    key: str
    accepted: int = 0
    statuses: list[int] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    sent_batches: int = 0

    def batch(self, number: int) -> bytes:
        t = time.time() - 60 + number * 0.001
        batch = ingest_pb2.MetricBatch(batch_id=f"sender-{number}")
        for i in range(SERIES_PER_BATCH):
            batch.metrics.add(
                name="exactly_once", labels={"series": str(i)}, value=number, timestamp=t
            )
        return batch.SerializeToString()

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/x-protobuf"}
        with httpx.Client(base_url=self.base_url, headers=headers, timeout=30) as http:
            number = 0
            while not self.stop.is_set():
                body = self.batch(number)
                response = http.post("/v1/metrics/ingest", content=body)
                self.statuses.append(response.status_code)
                if response.status_code != 202:
                    time.sleep(0.2)
                    continue  # retried with the same id, like an agent
                self.accepted += response.json()["accepted"]
                if number % 10 == 0:
                    # An agent that lost the 202 sends the same batch again.
                    assert http.post("/v1/metrics/ingest", content=body).status_code == 202
                number += 1
                self.sent_batches = number
                time.sleep(0.01)


def counts(conn: psycopg.Connection, tenant_id: uuid.UUID) -> tuple[int, int]:
    """(samples, distinct (series, time) pairs) of the tenant."""
    row = conn.execute(
        """
        SELECT count(*), count(DISTINCT (r.series_id, r.time))
        FROM vigil.samples r JOIN vigil.series s ON s.id = r.series_id
        WHERE s.tenant_id = %s
        """,
        (tenant_id,),
    ).fetchone()
    assert row is not None
    return row[0], row[1]


@pytest.fixture
def sender(bus_settings: Settings, issued: IssuedKey) -> Iterator[Sender]:
    with api_server(bus_settings) as base_url:
        agent = Sender(base_url, issued.key)
        thread = threading.Thread(target=agent.run, daemon=True)
        thread.start()
        yield agent
        agent.stop.set()
        thread.join(30)


def start_writer(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "VIGIL_DATABASE_URL": settings.database_url,
        "VIGIL_BUS__STREAM_PREFIX": settings.bus.stream_prefix,
        "VIGIL_BUS__RECLAIM_IDLE": "1s",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "vigil", "writer", "--consumers", "2", "--report-every", "0.2"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        cwd=PROJECT_ROOT,
    )


def test_writer_killed_mid_stream_leaves_exactly_one_copy(
    bus_settings: Settings,
    issued: IssuedKey,
    conn: psycopg.Connection,
    sender: Sender,
    tmp_path: Path,
) -> None:
    log = tmp_path / "writer.log"
    writer = start_writer(bus_settings, log)
    try:
        for _ in range(3):
            wait_until(lambda: counts(conn, issued.tenant.id)[0] > 0, timeout_s=30)
            time.sleep(0.7)
            writer.send_signal(signal.SIGKILL)
            writer.wait(10)
            writer = start_writer(bus_settings, log)
        time.sleep(1)
        sender.stop.set()
        time.sleep(0.5)
        wait_until(lambda: counts(conn, issued.tenant.id)[0] >= sender.accepted, timeout_s=60)
        time.sleep(2)  # anything beyond the accepted count would be a duplicate
    finally:
        writer.terminate()
        writer.wait(15)
    total, distinct = counts(conn, issued.tenant.id)
    assert sender.sent_batches > 20, log.read_text()[-2000:]
    assert total == sender.accepted == distinct, log.read_text()[-2000:]


def test_database_down_for_20s_loses_nothing(
    bus_settings: Settings, issued: IssuedKey, conn: psycopg.Connection, sender: Sender
) -> None:
    postgres = next(s for s in local_services(bus_settings) if isinstance(s, LocalPostgres))
    if not postgres.managed:
        pytest.skip("the database is not the local one; cannot stop it")
    with writers(bus_settings, consumers=2) as stats:
        wait_until(lambda: stats.samples > 0, timeout_s=30)
        conn.close()
        before = len(sender.statuses)
        postgres.down()
        try:
            time.sleep(20)
            during = sender.statuses[before:]
        finally:
            postgres.up()
        wait_until(lambda: stats.db_retries > 0, timeout_s=5)
        time.sleep(2)
        sender.stop.set()
        with psycopg.connect(bus_settings.database_url, autocommit=True) as fresh:
            wait_until(lambda: counts(fresh, issued.tenant.id)[0] >= sender.accepted, timeout_s=90)
            time.sleep(2)
            total, distinct = counts(fresh, issued.tenant.id)
    assert len(during) > 50 and set(during) == {202}, during[:20]
    assert total == sender.accepted == distinct
