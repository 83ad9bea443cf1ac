"""A Kafka for the bus tests: librdkafka's built-in mock cluster, when it can start."""

from __future__ import annotations

import io
import logging
import re
import threading
import time
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """host:port of a mock Kafka cluster speaking the real protocol (auto-creates topics
    with 4 partitions). Skipped, with the reason, where confluent-kafka cannot start it."""
    try:
        import confluent_kafka
    except ImportError as exc:
        pytest.skip(f"confluent-kafka (for librdkafka's mock cluster) is missing: {exc}")
    captured = io.StringIO()
    logger = logging.getLogger("tests.kafka_mock")
    logger.addHandler(logging.StreamHandler(captured))
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    producer = confluent_kafka.Producer(
        {"test.mock.num.brokers": 1, "debug": "mock", "logger": logger}
    )
    stop = threading.Event()

    def keep_alive() -> None:
        while not stop.is_set():
            producer.poll(0.1)

    thread = threading.Thread(target=keep_alive, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not (match := re.search(r"replaced with (\S+:\d+)", captured.getvalue())):
        if time.monotonic() > deadline:
            stop.set()
            pytest.skip(f"librdkafka's mock cluster did not start: {captured.getvalue()[-500:]}")
        time.sleep(0.05)
    yield match[1]
    stop.set()
    thread.join(5)
