"""The Kafka bus against a real Kafka protocol endpoint (librdkafka's mock cluster)."""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest

from ingest.bus.kafka import KafkaConsumerMember, KafkaPublisher, ensure_topic
from ingest.errors import BusUnavailable
from ingest.wire import ingest_pb2
from storage.tenants import IssuedKey
from tests.live_servers import api_server, client, free_port, wait_until, writers
from vigil.settings import Settings

PARTITIONS = 4  # what the mock cluster gives an auto-created topic


def drain(member: KafkaConsumerMember, expected: int, timeout_s: float = 20) -> list:
    received: list = []
    deadline = time.monotonic() + timeout_s
    while len(received) < expected and time.monotonic() < deadline:
        received += member.receive(100, 0.5)
    return received


def test_published_envelopes_reach_the_group_and_acks_commit(kafka_bootstrap: str) -> None:
    topic, group = f"t-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    ensure_topic(kafka_bootstrap, topic, PARTITIONS)
    publisher = KafkaPublisher(kafka_bootstrap, topic, PARTITIONS, group)
    messages = [(i % PARTITIONS, f"envelope-{i}".encode()) for i in range(12)]
    publisher.publish(messages)
    assert publisher.backlog() == 12

    member = KafkaConsumerMember(kafka_bootstrap, topic, group, "w1")
    received = drain(member, 12)
    assert sorted((d.partition, d.payload) for d in received) == sorted(messages)
    member.ack(received)
    member.close()
    time.sleep(0.6)  # the backlog figure is cached for 500 ms
    assert publisher.backlog() == 0

    again = KafkaConsumerMember(kafka_bootstrap, topic, group, "w2")
    assert drain(again, 1, timeout_s=4) == []
    again.close()
    publisher.close()


def test_unacknowledged_envelopes_go_to_the_next_member(kafka_bootstrap: str) -> None:
    topic, group = f"t-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    ensure_topic(kafka_bootstrap, topic, PARTITIONS)
    publisher = KafkaPublisher(kafka_bootstrap, topic, PARTITIONS, group)
    publisher.publish([(p, f"p{p}".encode()) for p in range(PARTITIONS)])
    crashed = KafkaConsumerMember(kafka_bootstrap, topic, group, "crashed")
    first = drain(crashed, PARTITIONS)
    crashed.close()  # never acknowledged, like a writer killed mid-batch
    successor = KafkaConsumerMember(kafka_bootstrap, topic, group, "successor")
    second = drain(successor, PARTITIONS)
    successor.close()
    publisher.close()
    assert sorted(d.payload for d in first) == sorted(d.payload for d in second)
    assert len(second) == PARTITIONS


def test_unreachable_kafka_is_bus_unavailable() -> None:
    with pytest.raises(BusUnavailable):
        ensure_topic(f"127.0.0.1:{free_port()}", "nowhere", 1, timeout_s=2)


def test_samples_flow_through_kafka_into_the_database(
    kafka_bootstrap: str, settings: Settings, issued: IssuedKey, conn: psycopg.Connection
) -> None:
    bus = settings.bus.model_copy(
        update={
            "kind": "kafka",
            "kafka_bootstrap": kafka_bootstrap,
            "kafka_topic": f"t-{uuid.uuid4().hex[:8]}",
            "group": f"g-{uuid.uuid4().hex[:8]}",
            "partitions": PARTITIONS,
        }
    )
    on_kafka = settings.model_copy(update={"bus": bus})
    t = time.time()
    batch = ingest_pb2.MetricBatch(batch_id="kafka-1")
    for i in range(200):
        batch.metrics.add(name="via_kafka", labels={"i": str(i)}, value=i, timestamp=t)
    with api_server(on_kafka) as base_url, writers(on_kafka), client(base_url, issued.key) as http:
        for _ in range(2):  # the retry of an accepted batch is stored once
            response = http.post(
                "/v1/metrics/ingest",
                content=batch.SerializeToString(),
                headers={"Content-Type": "application/x-protobuf"},
            )
            assert response.status_code == 202, response.text

        def stored() -> int:
            row = conn.execute(
                "SELECT count(*) FROM vigil.samples r JOIN vigil.series s "
                "ON s.id = r.series_id WHERE s.tenant_id = %s",
                (issued.tenant.id,),
            ).fetchone()
            assert row is not None
            return int(row[0])

        wait_until(lambda: stored() >= 200, timeout_s=40)
        time.sleep(1)
    assert stored() == 200
