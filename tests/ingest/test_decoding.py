"""Request bodies → DecodedBatch: JSON, protobuf, remote write, content encodings, limits."""

from __future__ import annotations

import gzip
import json
import math
import struct
from typing import Any

import cramjam
import numpy as np
import orjson
import pytest

from ingest.decoding import (
    JSON,
    PROTOBUF,
    DecodedBatch,
    LabelSets,
    RawSeries,
    decode_ingest,
    decode_remote_write,
    decompress,
    media_type,
)
from ingest.errors import BatchTooLarge, MalformedBatch, UnsupportedMediaType
from ingest.wire import ingest_pb2, remote_pb2

SEED_EXAMPLE = (
    b'{"metrics":[{"name":"cpu_usage","labels":{"host":"server-1","region":"us-east"},'
    b'"value":0.73,"timestamp":1640000000}]}'
)
# Prometheus's staleness marker: a NaN with a payload that must survive bit for bit.
STALE_NAN_BITS = 0x7FF0000000000002
STALE_NAN = struct.unpack("<d", struct.pack("<Q", STALE_NAN_BITS))[0]


def bits(values: Any) -> list[int]:
    """The IEEE-754 bit patterns of float64 values, so NaNs compare exactly."""
    return [int(b) for b in np.asarray(values, np.float64).view(np.uint64)]


def json_body(*metrics: object, **extra: object) -> bytes:
    # The standard library's encoder, because orjson refuses integers beyond 64 bits.
    return json.dumps({"metrics": list(metrics), **extra}).encode()


def snappy(data: bytes) -> bytes:
    """Snappy block format, as Prometheus remote write sends it."""
    return bytes(cramjam.snappy.compress_raw(data))


def varint(number: int) -> bytes:
    out = bytearray()
    while True:
        byte, number = number & 0x7F, number >> 7
        out.append(byte | (0x80 if number else 0))
        if not number:
            return bytes(out)


def write_request(*series: tuple[list[tuple[str, str]], list[tuple[float, int]], int]) -> bytes:
    """A remote write body from (labels, [(value, timestamp ms)], native histograms) tuples."""
    request = remote_pb2.WriteRequest()
    for labels, samples, histograms in series:
        timeseries = request.timeseries.add()
        for name, value in labels:
            timeseries.labels.add(name=name, value=value)
        for value, timestamp in samples:
            timeseries.samples.add(value=value, timestamp=timestamp)
        for _ in range(histograms):
            timeseries.histograms.append(b"\x08\x01")
    return request.SerializeToString()


def rows(batch: DecodedBatch) -> list[tuple[RawSeries, int, int]]:
    """Each usable sample as (series, time µs, value bits), in request order."""
    return [
        (batch.series[s], t, b)
        for index, (s, t, b) in enumerate(
            zip(
                batch.series_index.tolist(),
                batch.times_us.tolist(),
                bits(batch.values),
                strict=True,
            )
        )
        if index not in batch.problems
    ]


# --- the seed's JSON format ---------------------------------------------------------------


def test_seed_json_example_decodes_to_exact_columns() -> None:
    batch = decode_ingest(SEED_EXAMPLE, JSON)
    assert batch.series == [RawSeries("cpu_usage", (("host", "server-1"), ("region", "us-east")))]
    assert batch.series_index.dtype == np.int32 and batch.series_index.tolist() == [0]
    assert batch.times_us.dtype == np.int64 and batch.times_us.tolist() == [1_640_000_000_000_000]
    assert batch.values.dtype == np.float64 and batch.values.tolist() == [0.73]
    assert batch.problems == {}
    assert batch.batch_id is None
    assert batch.samples == 1


@pytest.mark.parametrize(
    ("timestamp", "expected_us"),
    [
        (1640000000, 1_640_000_000_000_000),
        (1640000000.5, 1_640_000_000_500_000),
        (1640000000.123456, 1_640_000_000_123_456),
        (1640000000.000001, 1_640_000_000_000_001),
        (1640000000.999999, 1_640_000_000_999_999),
        (0.25, 250_000),
    ],
)
def test_json_seconds_become_microseconds_keeping_fractions(
    timestamp: float, expected_us: int
) -> None:
    batch = decode_ingest(json_body({"name": "m", "value": 1, "timestamp": timestamp}), JSON)
    assert batch.times_us.tolist() == [expected_us]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.73, 0.73),
        (5, 5.0),
        (-2.5e-300, -2.5e-300),
        ("NaN", math.nan),
        ("nan", math.nan),
        ("+Inf", math.inf),
        ("Inf", math.inf),
        ("-Inf", -math.inf),
    ],
)
def test_json_values_accept_numbers_and_special_strings(value: object, expected: float) -> None:
    batch = decode_ingest(json_body({"name": "m", "value": value, "timestamp": 1}), JSON)
    assert batch.problems == {}
    assert bits(batch.values) == bits([expected])


def test_json_batch_id_and_repeated_series_are_carried() -> None:
    body = json_body(
        {"name": "a", "labels": {"x": "1"}, "value": 1, "timestamp": 10},
        {"name": "b", "value": 2, "timestamp": 11},
        {"name": "a", "labels": {"x": "1"}, "value": 3, "timestamp": 12},
        batch_id="agent-7/42",
    )
    batch = decode_ingest(body, "Application/JSON; charset=utf-8")
    assert batch.batch_id == "agent-7/42"
    assert batch.series == [RawSeries("a", (("x", "1"),)), RawSeries("b", ())]
    assert batch.series_index.tolist() == [0, 1, 0]
    assert batch.times_us.tolist() == [10_000_000, 11_000_000, 12_000_000]
    assert batch.values.tolist() == [1.0, 2.0, 3.0]


def test_json_labels_keep_request_order() -> None:
    body = json_body({"name": "m", "labels": {"z": "1", "a": "2"}, "value": 1, "timestamp": 1})
    assert decode_ingest(body, JSON).series == [RawSeries("m", (("z", "1"), ("a", "2")))]


@pytest.mark.parametrize(
    ("entry", "code"),
    [
        ("not an object", "malformed_metric"),
        (["name", "m"], "malformed_metric"),
        (None, "malformed_metric"),
        ({"value": 1, "timestamp": 1}, "invalid_metric_name"),
        ({"name": 7, "value": 1, "timestamp": 1}, "invalid_metric_name"),
        ({"name": None, "value": 1, "timestamp": 1}, "invalid_metric_name"),
        ({"name": "m", "labels": {"host": 1}, "value": 1, "timestamp": 1}, "invalid_labels"),
        ({"name": "m", "labels": {"host": None}, "value": 1, "timestamp": 1}, "invalid_labels"),
        ({"name": "m", "labels": ["host", "a"], "value": 1, "timestamp": 1}, "invalid_labels"),
        ({"name": "m", "labels": "host=a", "value": 1, "timestamp": 1}, "invalid_labels"),
        ({"name": "m", "value": "abc", "timestamp": 1}, "invalid_value"),
        ({"name": "m", "value": "1.5", "timestamp": 1}, "invalid_value"),
        ({"name": "m", "value": None, "timestamp": 1}, "invalid_value"),
        ({"name": "m", "value": True, "timestamp": 1}, "invalid_value"),
        ({"name": "m", "value": {"v": 1}, "timestamp": 1}, "invalid_value"),
        ({"name": "m", "timestamp": 1}, "invalid_value"),
        ({"name": "m", "value": 10**30, "timestamp": 1}, ""),  # big, but a finite double
        ({"name": "m", "value": 1}, "invalid_timestamp"),
        ({"name": "m", "value": 1, "timestamp": None}, "invalid_timestamp"),
        ({"name": "m", "value": 1, "timestamp": "NaN"}, "invalid_timestamp"),
        ({"name": "m", "value": 1, "timestamp": "1640000000"}, "invalid_timestamp"),
        ({"name": "m", "value": 1, "timestamp": True}, "invalid_timestamp"),
        ({"name": "m", "value": 1, "timestamp": 1e300}, "invalid_timestamp"),
        ({"name": "m", "value": 1, "timestamp": -1e300}, "invalid_timestamp"),
        ({"name": "m", "value": 1, "timestamp": 10**18}, "invalid_timestamp"),
    ],
)
def test_json_entry_problem_is_recorded_at_its_index_and_neighbours_survive(
    entry: object, code: str
) -> None:
    good = {"name": "ok", "labels": {"k": "v"}, "value": 1.5, "timestamp": 100}
    batch = decode_ingest(json_body(good, entry, good), JSON)
    assert batch.samples == 3
    assert batch.problems == ({1: code} if code else {})
    survivors = [(series, t) for series, t, _ in rows(batch)]
    ok = RawSeries("ok", (("k", "v"),))
    assert survivors[0] == (ok, 100_000_000) and survivors[-1] == (ok, 100_000_000)
    assert batch.values[[0, 2]].tolist() == [1.5, 1.5]


def test_several_problems_are_each_recorded_at_their_index() -> None:
    body = json_body(
        {"name": "a", "value": 1, "timestamp": 1},
        "junk",
        {"name": "b", "value": "abc", "timestamp": 2},
        {"name": "c", "value": 3, "timestamp": 3},
        {"name": "d", "value": 4},
    )
    batch = decode_ingest(body, JSON)
    assert batch.problems == {1: "malformed_metric", 2: "invalid_value", 4: "invalid_timestamp"}
    assert [(s.metric, t) for s, t, _ in rows(batch)] == [("a", 1_000_000), ("c", 3_000_000)]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"not json",
        b'{"metrics":[}',
        b"\xff\xfe{}",
        b'{"metrics": NaN}',
        b"[]",
        b'"metrics"',
        b"null",
        b"{}",
        b'{"metrics": {}}',
        b'{"metrics": null}',
        b'{"metrics": "[]"}',
        b'{"metrics": [], "batch_id": 5}',
        b'{"metrics": [], "batch_id": ""}',
        b'{"metrics": [{"name": "m", "value": 1e400, "timestamp": 1}]}',
    ],
)
def test_undecodable_json_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedBatch):
        decode_ingest(body, JSON)


def test_empty_metrics_array_is_an_empty_batch() -> None:
    batch = decode_ingest(b'{"metrics": []}', JSON)
    assert batch.samples == 0 and batch.series == [] and batch.problems == {}


# --- the seed's format as protobuf ----------------------------------------------------------


def test_protobuf_metric_batch_decodes_like_the_json_example() -> None:
    message = ingest_pb2.MetricBatch(batch_id="b-1")
    message.metrics.add(
        name="cpu_usage",
        labels={"host": "server-1", "region": "us-east"},
        value=0.73,
        timestamp=1640000000,
    )
    message.metrics.add(name="mem", value=STALE_NAN, timestamp=1640000000.123456)
    batch = decode_ingest(message.SerializeToString(), PROTOBUF)
    assert batch.batch_id == "b-1"
    assert [(s.metric, dict(s.labels)) for s in batch.series] == [
        ("cpu_usage", {"host": "server-1", "region": "us-east"}),
        ("mem", {}),
    ]
    assert batch.series_index.tolist() == [0, 1]
    assert batch.times_us.tolist() == [1_640_000_000_000_000, 1_640_000_000_123_456]
    assert bits(batch.values) == bits([0.73, STALE_NAN])
    assert batch.problems == {}


def test_protobuf_without_batch_id_has_none() -> None:
    message = ingest_pb2.MetricBatch()
    message.metrics.add(name="m", value=1, timestamp=1)
    assert decode_ingest(message.SerializeToString(), PROTOBUF).batch_id is None


@pytest.mark.parametrize("timestamp", [math.nan, math.inf, -math.inf, 1e300])
def test_protobuf_unusable_timestamp_is_a_problem(timestamp: float) -> None:
    message = ingest_pb2.MetricBatch()
    message.metrics.add(name="a", value=1, timestamp=timestamp)
    message.metrics.add(name="b", value=2, timestamp=2)
    batch = decode_ingest(message.SerializeToString(), PROTOBUF)
    assert batch.problems == {0: "invalid_timestamp"}
    assert [(s.metric, t) for s, t, _ in rows(batch)] == [("b", 2_000_000)]


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xff\xff\xff",  # a tag varint that never ends
        b"\x0a\x05ab",  # a length-delimited field cut short
        b"\x0a\x80",  # a length varint cut short
        b"\x0a\x04\x0a\x02\xff\xfe",  # a metric whose name is not UTF-8
        b"\x0f",  # wire type 7 does not exist
    ],
)
def test_garbage_protobuf_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedBatch):
        decode_ingest(body, PROTOBUF)
    with pytest.raises(MalformedBatch):
        decode_remote_write(body)


@pytest.mark.parametrize(
    "content_type",
    [None, "", "text/plain", "application/x-www-form-urlencoded", "application/jsonx"],
)
def test_unknown_content_type_is_unsupported(content_type: str | None) -> None:
    with pytest.raises(UnsupportedMediaType):
        decode_ingest(SEED_EXAMPLE, content_type)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("application/json", JSON),
        ("Application/JSON; charset=utf-8", JSON),
        ("  application/x-protobuf ;proto=vigil.ingest.v1.MetricBatch", PROTOBUF),
        (None, ""),
    ],
)
def test_media_type_is_the_bare_lowercased_type(header: str | None, expected: str) -> None:
    assert media_type(header) == expected


# --- Prometheus remote write ----------------------------------------------------------------


def test_remote_write_takes_name_from_label_and_converts_milliseconds() -> None:
    body = write_request(
        (
            [("job", "node"), ("__name__", "up"), ("instance", "a:9100")],
            [(1.0, 1640000000000), (0.0, 1640000015123), (STALE_NAN, 1640000030000)],
            0,
        ),
        ([("__name__", "temp")], [(21.5, 1)], 0),
    )
    batch = decode_remote_write(body)
    assert batch.series == [
        RawSeries("up", (("job", "node"), ("instance", "a:9100"))),
        RawSeries("temp", ()),
    ]
    assert batch.series_index.tolist() == [0, 0, 0, 1]
    assert batch.times_us.tolist() == [
        1_640_000_000_000_000,
        1_640_000_015_123_000,
        1_640_000_030_000_000,
        1000,
    ]
    assert bits(batch.values) == bits([1.0, 0.0, STALE_NAN, 21.5])
    assert bits(batch.values)[2] == STALE_NAN_BITS
    assert batch.problems == {} and batch.batch_id is None


def test_remote_write_series_without_name_has_empty_metric() -> None:
    batch = decode_remote_write(write_request(([("job", "x")], [(1.0, 1000)], 0)))
    assert batch.series == [RawSeries("", (("job", "x"),))]


def test_remote_write_native_histograms_are_counted_as_problems() -> None:
    body = write_request(
        ([("__name__", "a")], [(1.0, 1000), (2.0, 2000)], 2),
        ([("__name__", "b")], [], 1),
        ([("__name__", "c")], [(3.0, 3000)], 0),
    )
    batch = decode_remote_write(body)
    assert batch.samples == 6
    assert batch.problems == {
        2: "native_histogram_unsupported",
        3: "native_histogram_unsupported",
        4: "native_histogram_unsupported",
    }
    assert [(s.metric, t) for s, t, _ in rows(batch)] == [
        ("a", 1_000_000),
        ("a", 2_000_000),
        ("c", 3_000_000),
    ]


@pytest.mark.parametrize("timestamp_ms", [2**62 // 1000 + 1, -(2**62 // 1000) - 1, 2**63 - 1])
def test_remote_write_out_of_range_timestamp_is_a_problem(timestamp_ms: int) -> None:
    body = write_request(([("__name__", "a")], [(1.0, timestamp_ms), (2.0, 5)], 0))
    batch = decode_remote_write(body)
    assert batch.problems == {0: "invalid_timestamp"}
    assert batch.times_us.tolist()[1] == 5000


def test_empty_remote_write_is_an_empty_batch() -> None:
    batch = decode_remote_write(b"")
    assert batch.samples == 0 and batch.series == []


# --- content encodings and size limits ------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        (None, lambda data: data),
        ("identity", lambda data: data),
        ("gzip", gzip.compress),
        ("GZIP", gzip.compress),
        (" gzip ", gzip.compress),
        ("snappy", snappy),
        ("Snappy", snappy),
    ],
)
def test_supported_content_encodings_restore_the_body(encoding: str | None, compress: Any) -> None:
    body = write_request(([("__name__", "up")], [(1.0, 1000 * i) for i in range(200)], 0))
    restored = decompress(compress(body), encoding, 1 << 20)
    assert restored == body
    assert decode_remote_write(restored).samples == 200


@pytest.mark.parametrize("encoding", ["br", "deflate", "zstd", "x-gzip", "gzip, snappy"])
def test_unknown_content_encoding_is_unsupported(encoding: str) -> None:
    with pytest.raises(UnsupportedMediaType):
        decompress(SEED_EXAMPLE, encoding, 1 << 20)


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [("identity", lambda data: data), ("gzip", gzip.compress), ("snappy", snappy)],
)
def test_size_limit_is_exact(encoding: str, compress: Any) -> None:
    body = b"x" * 1000
    assert decompress(compress(body), encoding, 1000) == body
    with pytest.raises(BatchTooLarge):
        decompress(compress(body), encoding, 999)


def test_gzip_bomb_is_refused_without_inflating_it() -> None:
    bomb = gzip.compress(bytes(50_000_000), compresslevel=9)
    assert len(bomb) < 100_000
    with pytest.raises(BatchTooLarge):
        decompress(bomb, "gzip", 1 << 20)


def test_snappy_length_header_over_limit_is_refused_before_decompressing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def must_not_run(data: bytes) -> bytes:
        raise AssertionError("decompressed a body whose header is over the limit")

    monkeypatch.setattr(cramjam.snappy, "decompress_raw", must_not_run)
    with pytest.raises(BatchTooLarge):
        decompress(varint(4_000_000_000) + b"\x00" * 16, "snappy", 1 << 20)


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", gzip.compress(SEED_EXAMPLE)[:-6]),  # cut inside the trailer
        ("gzip", gzip.compress(SEED_EXAMPLE * 50)[:40]),  # cut inside the data
        ("gzip", gzip.compress(SEED_EXAMPLE)[:5]),  # cut inside the header
        ("gzip", SEED_EXAMPLE),  # not gzip at all
        ("gzip", b""),
        ("snappy", b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01"),  # endless length varint
        ("snappy", varint(100) + b"\x00"),  # a header promising more than follows
        ("snappy", snappy(SEED_EXAMPLE)[:-3]),
        ("snappy", b""),
    ],
)
def test_broken_compression_is_malformed(encoding: str, body: bytes) -> None:
    with pytest.raises(MalformedBatch):
        decompress(body, encoding, 1 << 20)


def test_concatenated_gzip_members_are_read_in_full_or_refused() -> None:
    # RFC 1952 §2.2: a gzip file is a series of members; gzip.decompress reads them all.
    first = json_body({"name": "a", "value": 1, "timestamp": 1})
    body = gzip.compress(first) + gzip.compress(b"garbage that must not be ignored")
    try:
        restored = decompress(body, "gzip", 1 << 20)
    except MalformedBatch:
        return
    assert restored == gzip.decompress(body)


def _metric_batch(value: float) -> bytes:
    message = ingest_pb2.MetricBatch()
    message.metrics.add(name="m", value=value, timestamp=1)
    return message.SerializeToString()


def _remote(value: float) -> bytes:
    return write_request(([("__name__", "up")], [(value, 1000)], 0))


@pytest.mark.parametrize(
    ("decode", "first", "second", "equal"),
    [
        (lambda b: decode_ingest(b, JSON), SEED_EXAMPLE, bytes(bytearray(SEED_EXAMPLE)), True),
        (
            lambda b: decode_ingest(b, JSON),
            SEED_EXAMPLE,
            SEED_EXAMPLE.replace(b'"value":', b'"value": '),
            False,
        ),
        (lambda b: decode_ingest(b, PROTOBUF), _metric_batch(1), _metric_batch(1), True),
        (lambda b: decode_ingest(b, PROTOBUF), _metric_batch(1), _metric_batch(2), False),
        (decode_remote_write, _remote(1), _remote(1), True),
        (decode_remote_write, _remote(1), _remote(2), False),
    ],
)
def test_digest_identifies_the_body_content(
    decode: Any, first: bytes, second: bytes, equal: bool
) -> None:
    one, other = decode(first).digest, decode(second).digest
    assert len(one) == 16
    assert (one == other) is equal


def test_label_sets_remembered_across_requests_decode_the_same() -> None:
    label_sets = LabelSets()
    first = remote_pb2.WriteRequest()
    for job in ("a", "b"):
        series = first.timeseries.add()
        series.labels.add(name="__name__", value="up")
        series.labels.add(name="job", value=job)
        series.samples.add(timestamp=1, value=1.0)
    body = first.SerializeToString()
    cold = decode_remote_write(body)
    warm = [decode_remote_write(body, label_sets) for _ in range(2)]
    assert cold.series == warm[0].series == warm[1].series
    assert [s.labels for s in warm[1].series] == [(("job", "a"),), (("job", "b"),)]
    batch = ingest_pb2.MetricBatch()
    batch.metrics.add(name="m", labels={"x": "1", "y": "2"}, value=1.0, timestamp=1.0)
    batch.metrics.add(name="n", labels={"x": "1", "y": "2"}, value=1.0, timestamp=1.0)
    for _ in range(2):
        decoded = decode_ingest(batch.SerializeToString(), "application/x-protobuf", label_sets)
        assert [(s.metric, sorted(s.labels)) for s in decoded.series] == [
            ("m", [("x", "1"), ("y", "2")]),
            ("n", [("x", "1"), ("y", "2")]),
        ]


@pytest.mark.parametrize("timestamp", [0, -1.25, 253_402_300_800, 1e15])
def test_times_outside_1970_to_9999_are_invalid(timestamp: float) -> None:
    batch = decode_ingest(json_body({"name": "m", "value": 1, "timestamp": timestamp}), JSON)
    assert batch.problems == {0: "invalid_timestamp"}
    request = remote_pb2.WriteRequest()
    series = request.timeseries.add()
    series.labels.add(name="__name__", value="m")
    series.samples.add(timestamp=int(timestamp * 1000), value=1.0)
    assert decode_remote_write(request.SerializeToString()).problems == {0: "invalid_timestamp"}


@pytest.mark.parametrize("batch_id", ["x" * 129, "has space", "nul\x00", "é"])
def test_unusable_batch_ids_are_refused(batch_id: str) -> None:
    with pytest.raises(MalformedBatch, match="batch_id"):
        decode_ingest(orjson.dumps({"batch_id": batch_id, "metrics": []}), JSON)
    batch = ingest_pb2.MetricBatch(batch_id=batch_id)
    with pytest.raises(MalformedBatch, match="batch_id"):
        decode_ingest(batch.SerializeToString(), PROTOBUF)
