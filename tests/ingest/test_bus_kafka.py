"""The Kafka bus against a real Kafka protocol endpoint (librdkafka's mock cluster).

Never skipped: the mock comes with confluent-kafka, a dev dependency, so a cluster that
cannot start is an install problem and fails these tests, saying why."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest

from ingest.bus import Delivery
from ingest.bus.kafka import KafkaConsumerMember, KafkaPublisher, ensure_topic
from ingest.errors import BusUnavailable
from ingest.wire import ingest_pb2
from storage.tenants import IssuedKey
from tests.ingest.kafka_mock import MOCK_TOPIC_PARTITIONS, MockClusterUnavailable, MockKafkaCluster
from tests.live_servers import api_server, client, free_port, wait_until, writers
from tests.stored import sample_count
from vigil.settings import Settings

PARTITIONS = MOCK_TOPIC_PARTITIONS
# The mock never honours kafka-python's LeaveGroup (see kafka_mock), so a closed member
# holds its partitions until its session expires: keep sessions short to keep tests fast,
# but above the mock's 3 s first-join delay, during which a joining member is silent.
SESSION_MS = 4000

MakeMember = Callable[..., KafkaConsumerMember]


def mock_cluster() -> MockKafkaCluster:
    """A started mock cluster; the test fails (never skips) when it cannot start."""
    try:
        return MockKafkaCluster()
    except MockClusterUnavailable as exc:
        pytest.fail(f"no mock Kafka cluster: {exc}")


@pytest.fixture(scope="module")
def kafka_bootstrap() -> Iterator[str]:
    """host:port of a mock Kafka cluster speaking the real protocol, for this module.

    Topics are auto-created with 4 partitions."""
    cluster = mock_cluster()
    yield cluster.bootstrap
    cluster.stop()


@pytest.fixture
def bus(kafka_bootstrap: str) -> tuple[str, str]:
    """A fresh topic and consumer group on the mock cluster."""
    topic, group = f"t-{uuid.uuid4().hex[:12]}", f"g-{uuid.uuid4().hex[:12]}"
    ensure_topic(kafka_bootstrap, topic, PARTITIONS)
    return topic, group


@pytest.fixture
def publisher(kafka_bootstrap: str, bus: tuple[str, str]) -> Iterator[KafkaPublisher]:
    topic, group = bus
    # Backlog measured on every call, so tests see acks at once.
    publisher = KafkaPublisher(kafka_bootstrap, topic, PARTITIONS, group, backlog_ttl_s=0)
    yield publisher
    publisher.close()


@pytest.fixture
def member(kafka_bootstrap: str, bus: tuple[str, str]) -> Iterator[MakeMember]:
    """Makes members of the test's group; closes the ones a test leaves open."""
    topic, group = bus
    made: list[KafkaConsumerMember] = []

    def make(name: str, **options: int) -> KafkaConsumerMember:
        options.setdefault("session_timeout_ms", SESSION_MS)
        made.append(KafkaConsumerMember(kafka_bootstrap, topic, group, name, **options))
        return made[-1]

    yield make
    for each in made:
        each.close()


def drain(
    member: KafkaConsumerMember, expected: int, timeout_s: float = 12, max_messages: int = 100
) -> list[Delivery]:
    """Receive until `expected` deliveries arrived or `timeout_s` passed."""
    received: list[Delivery] = []
    deadline = time.monotonic() + timeout_s
    while len(received) < expected and time.monotonic() < deadline:
        received += member.receive(max_messages, 0.5)
    return received


def test_envelopes_arrive_on_their_partitions_in_order(
    publisher: KafkaPublisher, member: MakeMember
) -> None:
    messages = [(p, f"p{p}-{i}".encode()) for i in range(3) for p in (2, 0, 3, 1)]
    publisher.publish(messages)
    assert publisher.partitions == PARTITIONS
    assert publisher.backlog() == len(messages)

    writer = member("w1")
    received: list[Delivery] = []
    deadline = time.monotonic() + 12
    while len(received) < len(messages) and time.monotonic() < deadline:
        batch = writer.receive(5, 0.5)
        assert len(batch) <= 5
        received += batch
    assert len(received) == len(messages)
    for p in range(PARTITIONS):
        sent = [payload for partition, payload in messages if partition == p]
        assert [d.payload for d in received if d.partition == p] == sent
    assert all(d.handle[0].partition == d.partition for d in received)  # type: ignore[index]

    assert publisher.backlog() == len(messages)  # received is not yet written
    writer.ack(received[:5])
    assert publisher.backlog() == len(messages) - 5
    writer.ack(received[5:])
    assert publisher.backlog() == 0


def test_the_next_member_gets_exactly_what_was_not_acknowledged(
    publisher: KafkaPublisher, member: MakeMember
) -> None:
    publisher.publish([(p % PARTITIONS, f"e{p}".encode()) for p in range(8)])
    crashed = member("crashed")
    first = drain(crashed, 8)
    assert len(first) == 8
    crashed.ack(first[:3])  # written; the rest was in hand when the writer died
    crashed.close()

    successor = member("successor")
    second = drain(successor, 5)
    second += successor.receive(100, 0.5)  # an acknowledged one would have come with them
    assert sorted(d.payload for d in second) == sorted(d.payload for d in first[3:])
    successor.ack(second)
    assert publisher.backlog() == 0


def test_backlog_is_cached_briefly(kafka_bootstrap: str, bus: tuple[str, str]) -> None:
    topic, group = bus
    publisher = KafkaPublisher(kafka_bootstrap, topic, PARTITIONS, group, backlog_ttl_s=0.5)
    try:
        assert publisher.backlog() == 0
        publisher.publish([(0, b"x")])
        assert publisher.backlog() == 0  # the API asks per request; the bus is asked at 2 Hz
        time.sleep(0.6)
        assert publisher.backlog() == 1
    finally:
        publisher.close()


def test_acks_after_leaving_the_group_are_dropped_and_delivered_again(
    publisher: KafkaPublisher, member: MakeMember
) -> None:
    publisher.publish([(p % PARTITIONS, f"e{p}".encode()) for p in range(8)])
    writer = member("w1", max_poll_interval_ms=2000)
    received = drain(writer, 8)
    assert len(received) == 8

    time.sleep(3.5)  # a writer stuck on its batch past max_poll_interval leaves the group
    writer.ack(received)  # refused by the group: logged, not raised
    assert publisher.backlog() == 8

    again = drain(writer, 8)  # rejoins; the batch comes again and the ledger would dedup
    assert sorted(d.payload for d in again) == sorted(d.payload for d in received)
    writer.ack(again)
    assert publisher.backlog() == 0


@pytest.mark.parametrize(
    "connect",
    [
        pytest.param(lambda boot: ensure_topic(boot, "nowhere", 1, timeout_s=1), id="topic"),
        pytest.param(
            lambda boot: KafkaPublisher(boot, "nowhere", 1, "g", timeout_s=1).publish([(0, b"x")]),
            id="publisher",
        ),
        pytest.param(
            lambda boot: KafkaConsumerMember(boot, "nowhere", "g", "w", timeout_s=1).receive(1, 1),
            id="consumer",
        ),
    ],
)
def test_kafka_that_is_not_listening_is_bus_unavailable(connect: Callable[[str], None]) -> None:
    started = time.monotonic()
    with pytest.raises(BusUnavailable):
        connect(f"127.0.0.1:{free_port()}")
    assert time.monotonic() - started < 5


def test_kafka_going_away_is_bus_unavailable() -> None:
    cluster = mock_cluster()
    topic, group = f"t-{uuid.uuid4().hex[:12]}", f"g-{uuid.uuid4().hex[:12]}"
    try:
        ensure_topic(cluster.bootstrap, topic, PARTITIONS)
        publisher = KafkaPublisher(
            cluster.bootstrap, topic, PARTITIONS, group, timeout_s=2, backlog_ttl_s=0
        )
    finally:
        cluster.stop()
    try:
        for call in (lambda: publisher.publish([(1, b"x")]), publisher.backlog):
            started = time.monotonic()
            with pytest.raises(BusUnavailable):
                call()
            assert time.monotonic() - started < 8
    finally:
        publisher.close()


def test_a_topic_with_too_few_partitions_is_refused(kafka_bootstrap: str) -> None:
    with pytest.raises(BusUnavailable, match=r"fewer than bus\.partitions"):
        ensure_topic(kafka_bootstrap, f"t-{uuid.uuid4().hex[:12]}", PARTITIONS + 1)


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

        wait_until(lambda: sample_count(conn, issued.tenant.id) >= 200, timeout_s=40)
        time.sleep(1)
    assert sample_count(conn, issued.tenant.id) == 200
