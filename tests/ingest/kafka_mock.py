"""librdkafka's built-in mock Kafka cluster, run in-process for the Kafka bus tests.

No Kafka broker is installable here. A confluent-kafka client configured with
`test.mock.num.brokers` starts a mock cluster that speaks the real Kafka protocol on a
local port; it lives as long as that client is polled, and it announces its address
only in its `debug: mock` log, as a line like
`Mock cluster mockCluster1564287e8fd8 bootstrap.servers=127.0.0.1:44973`.

Quirks of the mock (librdkafka 2.16) seen through kafka-python 2.3:
- no CreateTopics: topics are auto-created on first use, always with 4 partitions;
- the first join of an empty group is held 3 s (like group.initial.rebalance.delay.ms),
  with no heartbeats meanwhile, so a session timeout under ~3.5 s expires mid-join;
- it advertises LeaveGroup v3 but parses it as v0-2, so kafka-python's goodbye fails
  with UNKNOWN_MEMBER_ID and a closed member stays in the group until its session
  times out; tests use short session timeouts for that reason;
- a group is Up as soon as the leader's SyncGroup arrives, and a follower's SyncGroup
  after that gets INVALID_REQUEST, so rebalances between two live members often
  repeat (or fail, for kafka-python's poll); tests avoid two concurrent members;
- OffsetFetch for "all partitions" fails in kafka-python, explicit partitions work;
- each new connection logs a harmless kafka-python ERROR: its ApiVersions v4 probe is
  answered in the v0 format, and it falls back.
"""

from __future__ import annotations

import collections
import re
import threading

# Auto-created topics on the mock always get this many partitions.
MOCK_TOPIC_PARTITIONS = 4

_BOOTSTRAP = re.compile(r"Mock cluster \S+ bootstrap\.servers=(\S+)")


class MockClusterUnavailable(RuntimeError):
    """The mock cluster could not be started here: an install problem, since
    confluent-kafka (with librdkafka's mock) is a dev dependency that ops/install installs."""


class _MockLog:
    """Keeps librdkafka's last log lines and spots the bootstrap address in them.

    librdkafka calls `log(level, fmt, *args)` on it. Not a `logging.Logger`: the mock
    logs every request it serves, and pytest attaches its capture handlers even to
    loggers that do not propagate.
    """

    def __init__(self) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=50)
        self.bootstrap: str | None = None
        self.found = threading.Event()

    def log(self, level: int, fmt: str, *args: object) -> None:
        line = fmt % args if args else fmt
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
            raise MockClusterUnavailable(
                f"confluent-kafka is not installed ({exc}): run ops/install, or "
                "pip install -e '.[dev]' in the virtualenv"
            ) from None
        self._log = _MockLog()
        try:
            self._client = confluent_kafka.Producer(
                {"test.mock.num.brokers": 1, "debug": "mock", "logger": self._log}
            )
        except Exception as exc:  # KafkaException, or a librdkafka built without the mock
            raise MockClusterUnavailable(f"librdkafka refused a mock cluster: {exc}") from None
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="kafka-mock", daemon=True)
        self._poller.start()
        if not self._log.found.wait(start_timeout_s):
            self.stop()
            recent = " | ".join(self._log.lines) or "(no log lines)"
            raise MockClusterUnavailable(
                f"no 'Mock cluster ... bootstrap.servers=' line within {start_timeout_s}s; "
                f"librdkafka {confluent_kafka.libversion()[0]} logged: {recent}"
            )
        assert self._log.bootstrap is not None
        self.bootstrap = self._log.bootstrap

    def _poll(self) -> None:
        # Serving logs and keeping the cluster's client alive both need the poll loop.
        while not self._stop.is_set():
            self._client.poll(0.1)

    def stop(self) -> None:
        """Shut the cluster down; its port stops answering."""
        self._stop.set()
        self._poller.join(5)
        self._client.close()
