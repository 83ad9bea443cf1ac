"""A Kafka for the bus tests: librdkafka's built-in mock cluster, when it can start."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.ingest.kafka_mock import MockClusterUnavailable, MockKafkaCluster


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """host:port of a mock Kafka cluster speaking the real protocol, for the whole session.

    Topics are auto-created with 4 partitions. Skipped, with the reason, where
    confluent-kafka cannot start the mock.
    """
    try:
        cluster = MockKafkaCluster()
    except MockClusterUnavailable as exc:
        pytest.skip(f"no mock Kafka cluster: {exc}")
    yield cluster.bootstrap
    cluster.stop()
