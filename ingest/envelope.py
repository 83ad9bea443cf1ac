"""Bus envelopes: one tenant's accepted samples for one partition, and back.

A request is split by partition, so one series always travels through the same
partition (ordering per series, as the seed asks). Each envelope's batch key is the
request's key plus the partition number, and carries the request's batch time, so an
agent's retry of an accepted batch produces the same keys and the writer's ledger
stores it once.
"""

from __future__ import annotations

import hashlib
from uuid import UUID

import numpy as np

from ingest.validation import ValidatedBatch
from ingest.wire import bus_pb2
from storage.samples import SampleBatch, SeriesColumns
from storage.series import SeriesKey


def request_key(batch_id: str | None, digest: bytes) -> str:
    """The key of a request: the agent's batch id, else the hash of the body's content."""
    return f"id:{batch_id}" if batch_id else f"sha:{digest.hex()}"


_MIX = 0x9E3779B97F4A7C15
_MASK64 = (1 << 64) - 1


def _tenant_salt(tenant_id: UUID) -> int:
    """Mixed into series routes, so equal series of two tenants spread independently."""
    return int.from_bytes(hashlib.blake2b(tenant_id.bytes, digest_size=8).digest())


def encode_envelopes(
    tenant_id: UUID, key: str, batch: ValidatedBatch, partitions: int, accepted_at_us: int
) -> list[tuple[int, bytes]]:
    """The (partition, payload) pairs that carry a validated batch."""
    if not batch.series:
        return []
    salt = _tenant_salt(tenant_id)
    # Multiplying by an odd 64-bit constant and keeping the high bits mixes the salt into
    # every bit, so with a power-of-two partition count tenants still spread differently
    # (a plain XOR would only renumber the partitions).
    series_partition = np.fromiter(
        ((((series.route ^ salt) * _MIX & _MASK64) >> 32) % partitions for series in batch.series),
        np.int64,
        len(batch.series),
    )
    sample_partition = np.repeat(series_partition, batch.counts)
    envelopes = []
    for partition in np.unique(series_partition).tolist():
        series_mask = series_partition == partition
        sample_mask = sample_partition == partition
        members = [batch.series[index] for index in np.flatnonzero(series_mask).tolist()]
        header = bus_pb2.Envelope(
            tenant_id=tenant_id.bytes,
            batch_key=f"{key}/{partition}",
            batch_time_us=batch.batch_time_us,
            sample_counts=batch.counts[series_mask].astype("<u4").tobytes(),
            times_us=batch.times_us[sample_mask].astype("<i8").tobytes(),
            values=batch.values[sample_mask].astype("<f8").tobytes(),
            accepted_at_us=accepted_at_us,
            fingerprints=b"".join(series.fingerprint for series in members),
        ).SerializeToString()
        envelopes.append((partition, header + b"".join(series.wire for series in members)))
    return envelopes


def decode_envelope(payload: bytes) -> tuple[SampleBatch, int]:
    """The sample batch an envelope carries, and when the API accepted it (Unix µs).

    Series stay as fingerprints; a series' key is built only if the catalog asks for it
    (a series it has not seen), which keeps the writer's cost per known series tiny.
    """
    envelope = bus_pb2.Envelope.FromString(payload)
    blob = envelope.fingerprints
    series = envelope.series

    def key_of(index: int) -> SeriesKey:
        item = series[index]
        return SeriesKey(item.metric, tuple(zip(item.labels[::2], item.labels[1::2], strict=True)))

    columns = SeriesColumns(
        fingerprints=[blob[offset : offset + 16] for offset in range(0, len(blob), 16)],
        key_of=key_of,
        counts=np.frombuffer(envelope.sample_counts, "<u4").astype(np.int64),
        times_us=np.frombuffer(envelope.times_us, "<i8").astype(np.int64),
        values=np.frombuffer(envelope.values, "<f8").astype(np.float64),
    )
    if not len(columns.fingerprints) == len(series) == len(columns.counts):
        raise ValueError("envelope series, fingerprints and counts disagree")
    if int(columns.counts.sum()) != len(columns.times_us) or len(columns.values) != len(
        columns.times_us
    ):
        raise ValueError("envelope sample counts disagree with its columns")
    batch = SampleBatch(
        key=envelope.batch_key,
        tenant_id=UUID(bytes=envelope.tenant_id),
        series=columns,
        batch_time_us=envelope.batch_time_us,
    )
    return batch, envelope.accepted_at_us
