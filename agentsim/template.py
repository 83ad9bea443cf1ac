"""Pre-encoded request bodies whose sample values and timestamps are rewritten in place.

Load mode sends the same series over and over; only values, timestamps and the batch id
change. Re-serializing a protobuf message costs ~0.5-0.8 µs per sample in Python, which
would make the generator compete with the server it measures. Instead each body is
encoded once with the generated protobuf classes, and the byte positions of every
value and timestamp are remembered; a render writes the new bytes there with numpy and
copies the buffer out (~10x cheaper). Every fixed-width field this relies on is checked
when the template is built, so a change in the encoding fails loudly, not silently.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from ingest.wire import ingest_pb2, remote_pb2

Series = tuple[str, dict[str, str]]

BATCH_ID_LENGTH = 32  # uuid4().hex
# A remote-write timestamp is a varint; every millisecond time from 1971 to 2109 takes 6 bytes.
_TIME_VARINT_BYTES = 6
_REFERENCE_MS = 1 << 40

_DOUBLE = np.dtype("<f8")


class _Template:
    """An encoded body plus where each sample's value and timestamp bytes are."""

    time_width = 8  # bytes of one encoded timestamp

    def __init__(self, head: bytes, parts: list[bytes], value_back: int, time_back: int) -> None:
        """`parts` encode one sample each; its value and timestamp start this far from its end."""
        if not parts:
            raise ValueError("a template needs at least one series")
        ends = len(head) + np.cumsum([len(part) for part in parts])
        self.body: npt.NDArray[np.uint8] = np.frombuffer(head + b"".join(parts), np.uint8).copy()
        self._value_at = np.add.outer(ends - value_back, np.arange(8))
        self._time_at = np.add.outer(ends - time_back, np.arange(self.time_width))
        self.samples = len(parts)

    def _write(self, values: npt.NDArray[np.float64], time_bytes: bytes) -> None:
        if values.shape != (self.samples,):
            raise ValueError(f"expected {self.samples} values, got shape {values.shape}")
        self.body[self._value_at] = values.astype(_DOUBLE, copy=False).view(np.uint8).reshape(-1, 8)
        self.body[self._time_at] = np.frombuffer(time_bytes, np.uint8)


class AgentBatchTemplate(_Template):
    """A `MetricBatch` of fixed series: render writes values, one timestamp and a batch id."""

    def __init__(self, series: Sequence[Series]) -> None:
        head = ingest_pb2.MetricBatch(batch_id="0" * BATCH_ID_LENGTH).SerializeToString()
        parts = []
        for name, labels in series:
            metric = ingest_pb2.Metric(name=name, labels=labels, value=1.0, timestamp=1.0)
            part = ingest_pb2.MetricBatch(metrics=[metric]).SerializeToString()
            # ... 0x19 <value, 8 bytes LE double> 0x21 <timestamp, 8 bytes LE double>
            if part[-18] != 0x19 or part[-9] != 0x21:
                raise AssertionError("Metric no longer ends with value, timestamp")
            parts.append(part)
        super().__init__(head, parts, value_back=17, time_back=8)
        self._id_at = slice(len(head) - BATCH_ID_LENGTH, len(head))

    def render(self, values: npt.NDArray[np.float64], timestamp_s: float, batch_id: str) -> bytes:
        """The encoded batch with these values (one per series), timestamp and id."""
        encoded = batch_id.encode("ascii")
        if len(encoded) != BATCH_ID_LENGTH:
            raise ValueError(f"batch id must be {BATCH_ID_LENGTH} ASCII characters")
        self._write(values, struct.pack("<d", timestamp_s))
        self.body[self._id_at] = np.frombuffer(encoded, np.uint8)
        return self.body.tobytes()


class RemoteWriteTemplate(_Template):
    """A Prometheus `WriteRequest`, one sample per series: render writes values and a time."""

    time_width = _TIME_VARINT_BYTES

    def __init__(self, series: Sequence[Series]) -> None:
        parts = []
        for name, labels in series:
            timeseries = remote_pb2.TimeSeries(
                # Remote write wants labels sorted by name; `__name__` sorts before [a-z].
                labels=[
                    remote_pb2.Label(name=key, value=value)
                    for key, value in sorted({"__name__": name, **labels}.items())
                ],
                samples=[remote_pb2.Sample(value=1.0, timestamp=_REFERENCE_MS)],
            )
            part = remote_pb2.WriteRequest(timeseries=[timeseries]).SerializeToString()
            # ... 0x12 <len 16> 0x09 <value, 8 bytes LE double> 0x10 <timestamp, 6-byte varint>
            if part[-18:-16] != b"\x12\x10" or part[-16] != 0x09 or part[-7] != 0x10:
                raise AssertionError("TimeSeries no longer ends with one Sample")
            parts.append(part)
        super().__init__(b"", parts, value_back=15, time_back=6)

    def render(self, values: npt.NDArray[np.float64], timestamp_ms: int) -> bytes:
        """The encoded (uncompressed) request with these values and one timestamp."""
        self._write(values, _varint(timestamp_ms, _TIME_VARINT_BYTES))
        return self.body.tobytes()


def _varint(number: int, width: int) -> bytes:
    """`number` as a protobuf varint, which must take exactly `width` bytes."""
    if not (1 << (7 * (width - 1))) <= number < (1 << (7 * width)):
        raise ValueError(f"{number} does not fit a {width}-byte varint")
    out = bytearray()
    for _ in range(width - 1):
        out.append((number & 0x7F) | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)
