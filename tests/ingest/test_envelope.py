"""Bus envelopes: validated batches split by partition, encoded, and decoded back."""

from __future__ import annotations

import struct
import uuid

import numpy as np
import pytest

from ingest.decoding import JSON, decode_ingest, decode_remote_write
from ingest.envelope import decode_envelope, encode_envelopes, request_key
from ingest.validation import Limits, SeriesRules, ValidatedBatch, validate
from ingest.wire import bus_pb2, ingest_pb2, remote_pb2
from storage.samples import SampleBatch
from storage.series import SeriesKey

NOW_US = 1_700_000_000_000_000
WINDOW_US = 3_600_000_000
TENANT = uuid.UUID("6c1d2f6e-0000-4000-8000-000000000001")
STALE_NAN = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]
QUIET_NAN = struct.unpack("<d", struct.pack("<Q", 0xFFF8000000000001))[0]


def bits(values: np.ndarray) -> list[int]:
    return [int(b) for b in np.asarray(values, np.float64).view(np.uint64)]


def validated_remote_write(series: int, samples: int) -> ValidatedBatch:
    """Many series with several samples each, including NaNs whose payload matters."""
    request = remote_pb2.WriteRequest()
    for i in range(series):
        timeseries = request.timeseries.add()
        timeseries.labels.add(name="__name__", value=f"metric_{i % 3}")
        timeseries.labels.add(name="instance", value=f"host-{i}")
        if i % 2:
            timeseries.labels.add(name="az", value="eu-1b")
        for j in range(samples):
            value = STALE_NAN if j == 1 else QUIET_NAN if j == 2 else i * 1000.0 + j
            timeseries.samples.add(value=value, timestamp=NOW_US // 1000 - 60_000 + j * 15_000)
    decoded = decode_remote_write(request.SerializeToString())
    return validate(decoded, SeriesRules(Limits()), NOW_US, WINDOW_US)


def validated_json(*names: str, batch_id: str | None = None) -> ValidatedBatch:
    """One sample per named series, through the real decoder and validator."""
    message = ingest_pb2.MetricBatch(batch_id=batch_id or "")
    for offset, name in enumerate(names):
        message.metrics.add(name=name, labels={"job": "x"}, value=offset, timestamp=NOW_US / 1e6)
    decoded = decode_ingest(message.SerializeToString(), "application/x-protobuf")
    return validate(decoded, SeriesRules(Limits()), NOW_US, WINDOW_US)


def expected_samples(batch: ValidatedBatch) -> dict[SeriesKey, tuple[list[int], list[int]]]:
    bounds = np.concatenate(([0], np.cumsum(batch.counts))).tolist()
    return {
        series.key: (
            batch.times_us[bounds[i] : bounds[i + 1]].tolist(),
            bits(batch.values[bounds[i] : bounds[i + 1]]),
        )
        for i, series in enumerate(batch.series)
    }


def decoded_envelopes(
    envelopes: list[tuple[int, bytes]],
) -> list[tuple[int, SampleBatch, int]]:
    return [(partition, *decode_envelope(payload)) for partition, payload in envelopes]


@pytest.mark.parametrize("partitions", [1, 2, 8, 61])
def test_round_trip_is_exact_across_partitions(partitions: int) -> None:
    batch = validated_remote_write(series=40, samples=5)
    assert batch.accepted == 200 and batch.rejections == []
    envelopes = encode_envelopes(TENANT, "sha:abc", batch, partitions, accepted_at_us=NOW_US + 7)
    partitions_used = [partition for partition, _ in envelopes]
    assert partitions_used == sorted(set(partitions_used))
    assert all(0 <= partition < partitions for partition in partitions_used)
    if partitions == 8:
        assert len(envelopes) > 1  # 40 series do not all hash to one of 8 partitions

    received: dict[SeriesKey, tuple[list[int], list[int]]] = {}
    for partition, sample_batch, accepted_at in decoded_envelopes(envelopes):
        assert sample_batch.key == f"sha:abc/{partition}"
        assert sample_batch.tenant_id == TENANT
        assert sample_batch.batch_time_us == batch.batch_time_us
        assert accepted_at == NOW_US + 7
        for part in sample_batch.series:
            assert part.key not in received
            assert part.times_us.dtype == np.int64 and part.values.dtype == np.float64
            received[part.key] = (part.times_us.tolist(), bits(part.values))
    assert received == expected_samples(batch)
    some_key = batch.series[0].key
    assert received[some_key][1][1] == 0x7FF0000000000002
    assert received[some_key][1][2] == 0xFFF8000000000001


def test_labels_travel_sorted_and_paired() -> None:
    body = (
        b'{"metrics":[{"name":"cpu_usage","labels":{"region":"us-east","host":"server-1",'
        b'"empty":""},"value":0.73,"timestamp":%d}]}'
    ) % (NOW_US // 1_000_000)
    batch = validate(decode_ingest(body, JSON), SeriesRules(Limits()), NOW_US, WINDOW_US)
    [(_, payload)] = encode_envelopes(TENANT, "id:b", batch, 4, 0)
    envelope = bus_pb2.Envelope.FromString(payload)
    assert [(s.metric, list(s.labels)) for s in envelope.series] == [
        ("cpu_usage", ["host", "server-1", "region", "us-east"])
    ]
    sample_batch, _ = decode_envelope(payload)
    assert next(iter(sample_batch.series)).key == SeriesKey(
        "cpu_usage", (("host", "server-1"), ("region", "us-east"))
    )
    assert next(iter(sample_batch.series)).values.tolist() == [0.73]


def key(name: str) -> SeriesKey:
    return SeriesKey(name, (("job", "x"),))


def partition_of(tenant: uuid.UUID, batch: ValidatedBatch, key: SeriesKey, partitions: int) -> int:
    for partition, sample_batch, _ in decoded_envelopes(
        encode_envelopes(tenant, "k", batch, partitions, 0)
    ):
        if any(part.key == key for part in sample_batch.series):
            return partition
    raise AssertionError(f"{key} is in no envelope")


def test_a_series_keeps_its_partition_whatever_else_is_in_the_batch() -> None:
    names = [f"series_{i}" for i in range(30)]
    alone = {name: partition_of(TENANT, validated_json(name), key(name), 8) for name in names}
    together = validated_json(*names)
    reversed_order = validated_json(*reversed(names))
    for name in names:
        assert partition_of(TENANT, together, key(name), 8) == alone[name]
        assert partition_of(TENANT, reversed_order, key(name), 8) == alone[name]
    assert len(set(alone.values())) > 1


def grouping(tenant: uuid.UUID, batch: ValidatedBatch, names: list[str]) -> set[frozenset[str]]:
    """Which of the named series share a partition, whatever the partitions are numbered."""
    by_partition: dict[int, set[str]] = {}
    for name in names:
        by_partition.setdefault(partition_of(tenant, batch, key(name), 8), set()).add(name)
    return {frozenset(group) for group in by_partition.values()}


def test_tenants_spread_equal_series_independently() -> None:
    names = [f"series_{i}" for i in range(30)]
    batch = validated_json(*names)
    tenants = [uuid.uuid5(uuid.NAMESPACE_URL, f"tenant-{i}") for i in range(16)]
    groupings = {frozenset(grouping(tenant, batch, names)) for tenant in tenants}
    # With independent spreads, 16 tenants grouping 30 series alike is vanishingly unlikely.
    assert len(groupings) > 1


@pytest.mark.parametrize(
    ("batch_id", "digest", "expected"),
    [
        ("agent-1/42", b"\x01" * 16, "id:agent-1/42"),
        ("x", b"", "id:x"),
        (None, bytes(range(16)), "sha:000102030405060708090a0b0c0d0e0f"),
        ("", b"\xff\x00", "sha:ff00"),
    ],
)
def test_request_key(batch_id: str | None, digest: bytes, expected: str) -> None:
    assert request_key(batch_id, digest) == expected


@pytest.mark.parametrize("batch_id", ["agent-9", None])
def test_request_key_from_a_decoded_body(batch_id: str | None) -> None:
    message = ingest_pb2.MetricBatch(batch_id=batch_id or "")
    message.metrics.add(name="m", value=1, timestamp=NOW_US / 1e6)
    decoded = decode_ingest(message.SerializeToString(), "application/x-protobuf")
    expected = f"id:{batch_id}" if batch_id else f"sha:{decoded.digest.hex()}"
    assert request_key(decoded.batch_id, decoded.digest) == expected


def test_the_same_request_encodes_identically_apart_from_accepted_at() -> None:
    body = validated_remote_write(series=20, samples=3)
    again = validated_remote_write(series=20, samples=3)  # a retry, decoded afresh
    first = encode_envelopes(TENANT, "id:r", body, 8, accepted_at_us=1)
    second = encode_envelopes(TENANT, "id:r", again, 8, accepted_at_us=2)
    assert first == encode_envelopes(TENANT, "id:r", body, 8, accepted_at_us=1)
    assert [partition for partition, _ in first] == [partition for partition, _ in second]
    assert [payload for _, payload in first] != [payload for _, payload in second]

    def without_accepted_at(payload: bytes) -> bytes:
        envelope = bus_pb2.Envelope.FromString(payload)
        envelope.ClearField("accepted_at_us")
        return envelope.SerializeToString()

    assert [without_accepted_at(p) for _, p in first] == [without_accepted_at(p) for _, p in second]


def test_a_batch_with_nothing_accepted_has_no_envelopes() -> None:
    empty = validate(
        decode_ingest(b'{"metrics":[{"name":"bad-name","value":1,"timestamp":1}]}', JSON),
        SeriesRules(Limits()),
        NOW_US,
        WINDOW_US,
    )
    assert empty.accepted == 0
    assert encode_envelopes(TENANT, "id:x", empty, 8, 0) == []


def test_envelope_counts_match_its_samples() -> None:
    batch = validated_remote_write(series=12, samples=4)
    for _, payload in encode_envelopes(TENANT, "k", batch, 3, 0):
        envelope = bus_pb2.Envelope.FromString(payload)
        counts = np.frombuffer(envelope.sample_counts, "<u4")
        assert len(counts) == len(envelope.series)
        assert len(envelope.times_us) == len(envelope.values) == 8 * int(counts.sum())
        assert uuid.UUID(bytes=envelope.tenant_id) == TENANT
