"""The Redis Streams bus against a real Redis: delivery, acks, sharing, reclaiming, outages."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ingest.bus import Delivery
from ingest.bus.redis_streams import RedisStreamsConsumer, RedisStreamsPublisher
from ingest.errors import BusUnavailable
from tests.live_servers import free_port
from vigil.settings import Settings

GROUP = "writers"
PARTITIONS = 4


@pytest.fixture(scope="module")
def redis_url(settings: Settings, database_url: str) -> str:
    """The local Redis; `database_url` brings the services up, as for every server test."""
    client = redis.Redis.from_url(settings.redis_url)
    try:
        assert client.ping()
    finally:
        client.close()
    return settings.redis_url


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """Stream names of this test's own, deleted afterwards."""
    name = f"test:bus:{uuid.uuid4().hex[:12]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{name}:*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def connect(url: str) -> redis.Redis:
    """A client of its own per publisher or consumer, as the composition root gives them."""
    return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=3)


def consumer(
    url: str, prefix: str, name: str, reclaim_idle_ms: int = 30_000
) -> RedisStreamsConsumer:
    return RedisStreamsConsumer(
        connect(url), prefix, PARTITIONS, GROUP, name, reclaim_idle_ms=reclaim_idle_ms
    )


def drain(member: RedisStreamsConsumer, expected: int, timeout_s: float = 10) -> list[Delivery]:
    received: list[Delivery] = []
    deadline = time.monotonic() + timeout_s
    while len(received) < expected and time.monotonic() < deadline:
        received += member.receive(100, 0.2)
    return received


def contents(deliveries: list[Delivery]) -> list[tuple[int, bytes]]:
    return sorted((d.partition, d.payload) for d in deliveries)


def streams(prefix: str) -> list[str]:
    return [f"{prefix}:{partition}" for partition in range(PARTITIONS)]


def pending(client: redis.Redis, prefix: str) -> int:
    return sum(client.xpending(stream, GROUP)["pending"] for stream in streams(prefix))


def test_published_envelopes_arrive_with_their_partitions_in_order(
    redis_url: str, prefix: str
) -> None:
    publisher = RedisStreamsPublisher(connect(redis_url), prefix, PARTITIONS)
    assert publisher.partitions == PARTITIONS
    member = consumer(redis_url, prefix, "w1")
    messages = [(p, f"p{p}-{i}".encode()) for i in range(3) for p in range(PARTITIONS)]
    messages.append((2, bytes(range(256)) * 100))  # payloads are opaque bytes
    publisher.publish(messages)

    received = drain(member, len(messages))
    assert contents(received) == sorted(messages)
    for partition in range(PARTITIONS):
        in_order = [d.payload for d in received if d.partition == partition]
        assert in_order == [payload for p, payload in messages if p == partition]
    assert all(isinstance(d.handle, bytes) for d in received)
    assert member.receive(100, 0.1) == []
    member.close()
    publisher.close()


def test_acknowledged_envelopes_leave_the_streams(redis_url: str, prefix: str) -> None:
    publisher = RedisStreamsPublisher(connect(redis_url), prefix, PARTITIONS)
    member = consumer(redis_url, prefix, "w1")
    messages = [(i % PARTITIONS, f"e{i}".encode()) for i in range(10)]
    publisher.publish(messages)
    received = drain(member, 10)
    assert len(received) == 10
    member.ack([])  # nothing to do
    member.ack(received)

    client = connect(redis_url)
    assert [client.xlen(stream) for stream in streams(prefix)] == [0] * PARTITIONS
    assert pending(client, prefix) == 0
    assert RedisStreamsPublisher(connect(redis_url), prefix, PARTITIONS).backlog() == 0
    later = consumer(redis_url, prefix, "w2")
    assert later.receive(100, 0.2) == []
    for closing in (later, member, publisher):
        closing.close()
    client.close()


def test_backlog_counts_what_is_not_acknowledged(redis_url: str, prefix: str) -> None:
    publisher = RedisStreamsPublisher(connect(redis_url), prefix, PARTITIONS)
    member = consumer(redis_url, prefix, "w1")
    assert publisher.backlog() == 0
    publisher.publish([(p, b"x") for p in (0, 1, 1, 3, 3)])
    time.sleep(0.3)  # the figure is reused for 250 ms
    assert publisher.backlog() == 5
    received = drain(member, 5)
    assert len(received) == 5
    fresh = RedisStreamsPublisher(connect(redis_url), prefix, PARTITIONS)
    assert fresh.backlog() == 5  # delivered is not acknowledged
    fresh.close()
    member.ack(received[:2])
    time.sleep(0.3)
    assert publisher.backlog() == 3
    publisher.publish([(2, b"y")])
    assert RedisStreamsPublisher(connect(redis_url), prefix, PARTITIONS).backlog() == 4
    member.close()
    publisher.close()


def test_two_consumers_share_the_work_without_duplicates(redis_url: str, prefix: str) -> None:
    publisher = RedisStreamsPublisher(connect(redis_url), prefix, PARTITIONS)
    members = [consumer(redis_url, prefix, "w1"), consumer(redis_url, prefix, "w2")]
    messages = [(i % PARTITIONS, f"e{i}".encode()) for i in range(200)]
    publisher.publish(messages)

    by_member: list[list[Delivery]] = [[], []]
    deadline = time.monotonic() + 20
    while sum(map(len, by_member)) < len(messages) and time.monotonic() < deadline:
        for index, member in enumerate(members):
            got = member.receive(5, 0.1)
            member.ack(got)
            by_member[index] += got
    everything = by_member[0] + by_member[1]
    assert len(everything) == len(messages)
    assert len({d.payload for d in everything}) == len(messages)
    assert contents(everything) == sorted(messages)
    assert by_member[0] and by_member[1]
    client = connect(redis_url)
    assert pending(client, prefix) == 0
    client.close()
    for member in members:
        member.close()
    publisher.close()


def test_a_killed_consumers_deliveries_are_reclaimed_after_the_idle_time(
    redis_url: str, prefix: str
) -> None:
    publisher = RedisStreamsPublisher(connect(redis_url), prefix, PARTITIONS)
    crashed = consumer(redis_url, prefix, "crashed")
    first = [(p, f"first-{p}-{i}".encode()) for p in range(3) for i in range(2)]
    publisher.publish(first)
    taken = drain(crashed, len(first))
    assert contents(taken) == sorted(first)
    del crashed  # like kill -9: neither acknowledged nor closed

    second = [(p, f"second-{p}".encode()) for p in range(PARTITIONS)]
    publisher.publish(second)
    successor = consumer(redis_url, prefix, "successor", reclaim_idle_ms=1000)
    fresh = drain(successor, len(second))
    assert contents(fresh) == sorted(second)  # not idle long enough to be taken over yet
    successor.ack(fresh)

    time.sleep(1.1)
    reclaimed = successor.receive(100, 0.1)
    assert sorted((d.partition, d.payload, d.handle) for d in reclaimed) == sorted(
        (d.partition, d.payload, d.handle) for d in taken
    )
    successor.ack(reclaimed)
    time.sleep(1.1)
    assert successor.receive(100, 0.1) == []
    client = connect(redis_url)
    assert pending(client, prefix) == 0
    assert sum(client.xlen(stream) for stream in streams(prefix)) == 0
    client.close()
    successor.close()
    publisher.close()


def test_reclaiming_respects_max_messages_and_continues_at_once(
    redis_url: str, prefix: str
) -> None:
    publisher = RedisStreamsPublisher(connect(redis_url), prefix, PARTITIONS)
    crashed = consumer(redis_url, prefix, "crashed")
    messages = [(p, f"m-{p}-{i}".encode()) for p in range(3) for i in range(2)]
    publisher.publish(messages)
    taken = drain(crashed, len(messages))
    del crashed

    successor = consumer(redis_url, prefix, "successor", reclaim_idle_ms=200)
    time.sleep(0.3)
    batch_one = successor.receive(4, 0.1)
    batch_two = successor.receive(4, 0.1)  # the rest, without waiting for the next check
    assert len(batch_one) == 4 and len(batch_two) == 2
    assert contents(batch_one + batch_two) == contents(taken)
    successor.close()
    publisher.close()


@pytest.mark.parametrize("max_messages", [4, 8, 10, 100])
def test_receive_returns_at_most_max_messages(
    redis_url: str, prefix: str, max_messages: int
) -> None:
    publisher = RedisStreamsPublisher(connect(redis_url), prefix, PARTITIONS)
    member = consumer(redis_url, prefix, "w1")
    messages = [(p, f"{p}-{i}".encode()) for p in range(PARTITIONS) for i in range(30)]
    publisher.publish(messages)
    received: list[Delivery] = []
    while got := member.receive(max_messages, 0.2):
        assert len(got) <= max_messages
        received += got
    assert contents(received) == sorted(messages)  # bounded, and nothing left behind
    member.close()
    publisher.close()


def test_receive_below_the_partition_count_returns_at_most_max_messages(
    redis_url: str, prefix: str
) -> None:
    publisher = RedisStreamsPublisher(connect(redis_url), prefix, PARTITIONS)
    member = consumer(redis_url, prefix, "w1")
    publisher.publish([(p, f"{p}-{i}".encode()) for p in range(PARTITIONS) for i in range(2)])
    try:
        assert len(member.receive(PARTITIONS - 1, 1.0)) <= PARTITIONS - 1
    finally:
        member.close()
        publisher.close()


def test_the_group_is_recreated_when_the_streams_are_deleted(redis_url: str, prefix: str) -> None:
    publisher = RedisStreamsPublisher(connect(redis_url), prefix, PARTITIONS)
    member = consumer(redis_url, prefix, "w1")
    publisher.publish([(0, b"before")])
    member.ack(drain(member, 1))

    client = connect(redis_url)
    client.delete(*streams(prefix))  # e.g. an operator's FLUSHDB
    after = [(0, b"after-0"), (3, b"after-3")]
    publisher.publish(after)  # XADD recreates the streams, without the group
    assert all(client.xinfo_groups(s) == [] for s in (streams(prefix)[0], streams(prefix)[3]))

    received = drain(member, len(after))
    assert contents(received) == sorted(after)
    for stream in streams(prefix):
        assert [g["name"] for g in client.xinfo_groups(stream)] == [GROUP.encode()]
    member.ack(received)
    assert pending(client, prefix) == 0

    client.delete(*streams(prefix))  # and with nothing published since
    assert drain(member, 1, timeout_s=1) == []
    assert all(client.exists(stream) for stream in streams(prefix))
    client.close()
    member.close()
    publisher.close()


def unreachable() -> redis.Redis:
    # No client-side retries, so each call fails at once; the bus's mapping is what counts.
    return redis.Redis(port=free_port(), socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))


def test_redis_that_is_not_listening_is_bus_unavailable() -> None:
    publisher = RedisStreamsPublisher(unreachable(), "nowhere", PARTITIONS)
    publisher.publish([])  # nothing to send touches nothing
    with pytest.raises(BusUnavailable) as raised:
        publisher.publish([(0, b"x")])
    assert raised.value.retry_after_s > 0
    with pytest.raises(BusUnavailable):
        publisher.backlog()
    with pytest.raises(BusUnavailable):
        RedisStreamsConsumer(unreachable(), "nowhere", PARTITIONS, GROUP, "w1")


@pytest.fixture
def scratch_redis(tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A throwaway redis-server that a test may stop; stopped afterwards in any case."""
    port = free_port()
    server = shutil.which("redis-server") or "/usr/bin/redis-server"
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        probe = redis.Redis(port=port, retry=Retry(NoBackoff(), 0))
        while True:
            try:
                probe.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.05)
        probe.close()
        yield port, process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(10)


def test_redis_going_away_is_bus_unavailable_for_every_call(
    scratch_redis: tuple[int, subprocess.Popen[bytes]],
) -> None:
    port, process = scratch_redis

    def client() -> redis.Redis:
        return redis.Redis(port=port, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))

    publisher = RedisStreamsPublisher(client(), "gone", PARTITIONS)
    member = RedisStreamsConsumer(client(), "gone", PARTITIONS, GROUP, "w1")
    publisher.publish([(1, b"x")])
    received = drain(member, 1)
    assert contents(received) == [(1, b"x")]

    process.terminate()
    process.wait(10)
    time.sleep(0.3)  # past the cached backlog figure
    for call in (
        lambda: publisher.publish([(0, b"y")]),
        publisher.backlog,
        lambda: member.receive(10, 0.1),
        lambda: member.ack(received),
    ):
        with pytest.raises(BusUnavailable):
            call()
