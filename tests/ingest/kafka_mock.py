"""librdkafka's built-in mock Kafka cluster, run in-process for the Kafka bus tests.

No Kafka broker is installable here. A confluent-kafka client configured with
`test.mock.num.brokers` starts a mock cluster that speaks the real Kafka protocol on a
local port; it lives as long as that client is polled, and it announces its address
only in its `debug: mock` log, as a line like
`Mock cluster mockCluster1564287e8fd8 bootstrap.servers=127.0.0.1:44973`.

Known quirks of the mock (librdkafka 2.16) that the tests allow for:
- no CreateTopics: topics are auto-created on first use, always with 4 partitions;
- the initial join of an empty consumer group waits 3 s (group.initial.rebalance.delay);
- it advertises LeaveGroup v3 but parses it as v0-2, so kafka-python's goodbye fails
  with UNKNOWN_MEMBER_ID and a closed member stays in the group until its session
  times out; tests use short session timeouts for that reason.
"""

from __future__ import annotations

import collections
import logging
import re
import threading

# Auto-created topics on the mock always get this many partitions.
MOCK_TOPIC_PARTITIONS = 4

_BOOTSTRAP = re.compile(r"Mock cluster \S+ bootstrap\.servers=(\S+)")


class MockClusterUnavailable(RuntimeError):
    """The mock cluster could not be started here."""


class _Capture(logging.Handler):
    """Keeps the mock's recent log lines and spots its bootstrap address."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: collections.deque[str] = collections.deque(maxlen=50)
        self.bootstrap: str | None = None
        self.found = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        line = record.getMessage()
        self.lines.append(line)
        if self.bootstrap is None and (match := _BOOTSTRAP.search(line)):
            self.bootstrap = match[1]
            self.found.set()


class MockKafkaCluster:
    """A one-broker mock Kafka cluster, polled by a background thread until `stop`."""

    def __init__(self, start_timeout_s: float = 10.0) -> None:
        try:
            import confluent_kafka
        except ImportError as exc:
            raise MockClusterUnavailable(f"confluent-kafka is not installed: {exc}") from None
        self._capture = _Capture()
        # One logger per cluster, not propagated: the mock logs every request it serves.
        self._logger = logging.getLogger(f"tests.kafka_mock.{id(self):x}")
        self._logger.setLevel(logging.DEBUG)
        self._logger.propagate = False
        self._logger.addHandler(self._capture)
        try:
            self._client = confluent_kafka.Producer(
                {"test.mock.num.brokers": 1, "debug": "mock", "logger": self._logger}
            )
        except Exception as exc:  # KafkaException, or a librdkafka built without the mock
            raise MockClusterUnavailable(f"librdkafka refused a mock cluster: {exc}") from None
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="kafka-mock", daemon=True)
        self._poller.start()
        if not self._capture.found.wait(start_timeout_s):
            self.stop()
            recent = " | ".join(self._capture.lines) or "(no log lines)"
            raise MockClusterUnavailable(
                f"no 'Mock cluster ... bootstrap.servers=' line within {start_timeout_s}s; "
                f"librdkafka {confluent_kafka.libversion()[0]} logged: {recent}"
            )
        assert self._capture.bootstrap is not None
        self.bootstrap = self._capture.bootstrap

    def _poll(self) -> None:
        # Serving logs and keeping the cluster's client alive both need the poll loop.
        while not self._stop.is_set():
            self._client.poll(0.1)

    def stop(self) -> None:
        """Shut the cluster down; its port stops answering."""
        self._stop.set()
        self._poller.join(5)
        self._client.close()
        self._logger.removeHandler(self._capture)
