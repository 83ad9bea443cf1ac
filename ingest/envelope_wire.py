"""A series' bus encoding, made once per distinct series and reused in every envelope.

Protobuf concatenation is merging, and a repeated field's entries may appear anywhere
in a message, so an envelope is its scalar fields serialized once plus the cached
`series` entries appended as bytes: no per-series protobuf objects per request.
"""

from __future__ import annotations

from ingest.wire import bus_pb2
from storage.series import SeriesKey

# Field 4 (Envelope.series), wire type 2 (length-delimited).
_SERIES_TAG = b"\x22"


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def series_wire(key: SeriesKey) -> bytes:
    """The bytes of one `Envelope.series` entry for this series, tag included."""
    body = bus_pb2.Series(
        metric=key.metric, labels=[part for label in key.labels for part in label]
    ).SerializeToString()
    return _SERIES_TAG + _varint(len(body)) + body
