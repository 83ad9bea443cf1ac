"""Per-sample validation: naming rules, label limits, the time window, grouping by series."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ingest.decoding import JSON, DecodedBatch, RawSeries, decode_ingest, decode_remote_write
from ingest.validation import (
    REJECTION_CODES,
    AcceptedSeries,
    Limits,
    Rejection,
    SeriesRules,
    validate,
)
from ingest.wire import remote_pb2
from storage.series import SeriesKey

NOW_US = 1_700_000_000_000_000
WINDOW_US = 3_600_000_000  # one hour
FUTURE_US = Limits().max_future_us


def decoded(
    samples: list[tuple[RawSeries, int, float]], problems: dict[int, str] | None = None
) -> DecodedBatch:
    """A decoded batch from (series, time µs, value) rows, series interned as decoding does."""
    series: list[RawSeries] = []
    for raw, _, _ in samples:
        if raw not in series:
            series.append(raw)
    return DecodedBatch(
        series=series,
        series_index=np.array([series.index(raw) for raw, _, _ in samples], np.int32),
        times_us=np.array([t for _, t, _ in samples], np.int64),
        values=np.array([v for _, _, v in samples], np.float64),
        digest=b"\x00" * 16,
        problems=problems or {},
    )


def check(metric: str, labels: list[tuple[str, str]], limits: Limits | None = None) -> object:
    return SeriesRules(limits or Limits()).check(RawSeries(metric, tuple(labels)))


# --- series rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "labels", "code"),
    [
        ("bad-name", [], "invalid_metric_name"),
        ("1abc", [], "invalid_metric_name"),
        ("", [("job", "x")], "invalid_metric_name"),
        ("cpu usage", [], "invalid_metric_name"),
        ("cpü", [], "invalid_metric_name"),
        ("cpu\n", [], "invalid_metric_name"),
        ("m", [("bad-label", "x")], "invalid_label_name"),
        ("m", [("1x", "x")], "invalid_label_name"),
        ("m", [("a:b", "x")], "invalid_label_name"),  # colons only in metric names
        ("m", [("", "x")], "invalid_label_name"),
        ("m", [("__name__", "other")], "invalid_label_name"),
        ("m", [("job", "a"), ("job", "b")], "duplicate_label_name"),
        ("m", [("job", "a"), ("job", "a")], "duplicate_label_name"),
        ("m", [("b", "1"), ("job", "a"), ("a", "2"), ("job", "c")], "duplicate_label_name"),
        ("m", [(f"l{i}", "v") for i in range(31)], "too_many_labels"),
        ("m", [("l" * 1025, "v")], "label_name_too_long"),
        ("m" * 1025, [], "label_name_too_long"),
        ("m", [("job", "v" * 2049)], "label_value_too_long"),
        ("m", [("job", "a\x00b")], "invalid_label_value"),
    ],
)
def test_series_breaking_a_rule_gets_its_code(
    metric: str, labels: list[tuple[str, str]], code: str
) -> None:
    assert check(metric, labels) == code
    assert code in REJECTION_CODES


@pytest.mark.parametrize(
    ("metric", "labels", "key"),
    [
        ("cpu_usage", [], SeriesKey("cpu_usage", ())),
        ("_", [], SeriesKey("_", ())),
        (
            "ns:rule:rate5m",
            [("region", "us-east"), ("host", "server-1")],
            SeriesKey("ns:rule:rate5m", (("host", "server-1"), ("region", "us-east"))),
        ),
        (
            "m",
            [("_x", "1"), ("B", "2"), ("a", "3")],
            SeriesKey("m", (("B", "2"), ("_x", "1"), ("a", "3"))),
        ),
        ("m", [("job", ""), ("host", "a")], SeriesKey("m", (("host", "a"),))),
        ("m", [("job", ""), ("job", "x")], SeriesKey("m", (("job", "x"),))),
        ("m", [("bad-label", "")], SeriesKey("m", ())),  # absent, so never checked
        (
            "m",
            [(f"l{i}", "v") for i in range(30)],
            SeriesKey.of("m", {f"l{i}": "v" for i in range(30)}),
        ),
        (
            "m",
            [(f"l{i}", "v") for i in range(30)] + [("empty", "")],
            SeriesKey.of("m", {f"l{i}": "v" for i in range(30)}),
        ),
        (
            "m" * 1024,
            [("l" * 1024, "v" * 2048)],
            SeriesKey("m" * 1024, (("l" * 1024, "v" * 2048),)),
        ),
        ("m", [("job", "ünïcode ✓ / spaces")], SeriesKey("m", (("job", "ünïcode ✓ / spaces"),))),
    ],
)
def test_valid_series_get_the_canonical_key(
    metric: str, labels: list[tuple[str, str]], key: SeriesKey
) -> None:
    verdict = check(metric, labels)
    assert isinstance(verdict, AcceptedSeries)
    assert verdict.key == key
    assert 0 <= verdict.route < 2**64


@pytest.mark.parametrize(
    ("metric", "labels", "code"),
    [
        ("m", [("a", "1"), ("b", "2"), ("c", "3")], None),
        ("m", [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")], "too_many_labels"),
        ("m", [("a", "1"), ("b", "2"), ("c", "3"), ("d", "")], None),
        ("m" * 8, [], None),
        ("m" * 9, [], "label_name_too_long"),
        ("m", [("l" * 8, "v")], None),
        ("m", [("l" * 9, "v")], "label_name_too_long"),
        ("m", [("job", "v" * 4)], None),
        ("m", [("job", "v" * 5)], "label_value_too_long"),
    ],
)
def test_configured_limits_apply_at_their_boundary(
    metric: str, labels: list[tuple[str, str]], code: str | None
) -> None:
    limits = Limits(max_labels=3, max_label_name_length=8, max_label_value_length=4)
    verdict = check(metric, labels, limits)
    if code is None:
        assert isinstance(verdict, AcceptedSeries)
    else:
        assert verdict == code


def test_route_depends_on_the_canonical_series_only() -> None:
    rules = SeriesRules(Limits())
    one = rules.check(RawSeries("m", (("a", "1"), ("b", "2"))))
    same = rules.check(RawSeries("m", (("b", "2"), ("a", "1"), ("c", ""))))
    other = rules.check(RawSeries("m", (("a", "1"), ("b", "3"))))
    renamed = rules.check(RawSeries("n", (("a", "1"), ("b", "2"))))
    assert isinstance(one, AcceptedSeries) and isinstance(same, AcceptedSeries)
    assert isinstance(other, AcceptedSeries) and isinstance(renamed, AcceptedSeries)
    assert one == same
    assert len({one.route, other.route, renamed.route}) == 3
    # Stable across processes and releases: a fresh rules object computes the same route.
    assert SeriesRules(Limits()).check(RawSeries("m", (("a", "1"), ("b", "2")))) == one


def test_cached_verdicts_are_identical_and_the_cache_is_bounded() -> None:
    rules = SeriesRules(Limits(), max_cached=3)
    good, bad = RawSeries("m", (("a", "1"),)), RawSeries("bad-name", ())
    first_good, first_bad = rules.check(good), rules.check(bad)
    assert rules.check(RawSeries("m", (("a", "1"),))) is first_good
    assert rules.check(bad) == first_bad == "invalid_metric_name"
    for index in range(20):
        verdict = rules.check(RawSeries(f"m{index}", ()))
        assert isinstance(verdict, AcceptedSeries) and verdict.key.metric == f"m{index}"
        assert len(rules._verdicts) <= 3  # bounded; there is no public size to ask
    again = rules.check(good)
    assert again == first_good and again is not first_good  # evicted, then recomputed


# --- time window ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("time_us", "code"),
    [
        (NOW_US, None),
        (NOW_US - WINDOW_US, None),
        (NOW_US - WINDOW_US - 1, "sample_too_old"),
        (0, "sample_too_old"),
        (-(2**61), "sample_too_old"),
        (NOW_US + FUTURE_US, None),
        (NOW_US + FUTURE_US + 1, "sample_in_future"),
        (2**61, "sample_in_future"),
    ],
)
def test_time_window_boundaries(time_us: int, code: str | None) -> None:
    batch = validate(
        decoded([(RawSeries("m", ()), time_us, 1.0)]), SeriesRules(Limits()), NOW_US, WINDOW_US
    )
    if code is None:
        assert batch.rejections == [] and batch.times_us.tolist() == [time_us]
    else:
        assert batch.rejections == [Rejection(0, code)] and batch.accepted == 0


def test_max_future_comes_from_the_limits() -> None:
    rules = SeriesRules(Limits(max_future_us=1))
    sample = decoded([(RawSeries("m", ()), NOW_US + 1, 1.0), (RawSeries("m", ()), NOW_US + 2, 2.0)])
    batch = validate(sample, rules, NOW_US, WINDOW_US)
    assert batch.times_us.tolist() == [NOW_US + 1]
    assert batch.rejections == [Rejection(1, "sample_in_future")]


# --- whole batches --------------------------------------------------------------------------


def test_mixed_batch_groups_accepted_samples_and_lists_every_rejection_in_order() -> None:
    a = RawSeries("cpu", (("host", "a"),))
    bad = RawSeries("bad-name", ())
    b = RawSeries("cpu", (("host", "b"),))
    batch = decoded(
        [
            (a, NOW_US - 10, 1.0),  # 0
            (bad, NOW_US - 9, 2.0),  # 1 invalid_metric_name
            (b, NOW_US - 8, 3.0),  # 2
            (a, NOW_US - 20, 4.0),  # 3 (earlier than 0: request order is kept)
            (a, NOW_US - WINDOW_US - 1, 5.0),  # 4 sample_too_old
            (b, 0, math.nan),  # 5 decode problem, placeholder row
            (b, NOW_US + FUTURE_US + 1, 7.0),  # 6 sample_in_future
            (b, NOW_US - 7, -math.inf),  # 7
            (bad, NOW_US - 6, 9.0),  # 8 invalid_metric_name
            (a, NOW_US - 5, 10.0),  # 9
        ],
        problems={5: "invalid_value"},
    )
    result = validate(batch, SeriesRules(Limits()), NOW_US, WINDOW_US)
    key_a, key_b = SeriesKey("cpu", (("host", "a"),)), SeriesKey("cpu", (("host", "b"),))
    assert [s.key for s in result.series] == [key_a, key_b]
    assert result.counts.dtype == np.int64 and result.counts.tolist() == [3, 2]
    assert result.times_us.tolist() == [
        NOW_US - 10,
        NOW_US - 20,
        NOW_US - 5,
        NOW_US - 8,
        NOW_US - 7,
    ]
    assert result.values.tolist() == [1.0, 4.0, 10.0, 3.0, -math.inf]
    assert result.accepted == 5
    assert result.rejections == [
        Rejection(1, "invalid_metric_name"),
        Rejection(4, "sample_too_old"),
        Rejection(5, "invalid_value"),
        Rejection(6, "sample_in_future"),
        Rejection(8, "invalid_metric_name"),
    ]
    # The latest decodable sample that is not in the future (index 9).
    assert result.batch_time_us == NOW_US - 5


def test_differently_spelled_series_land_under_one_canonical_key() -> None:
    spellings = [
        RawSeries("cpu", (("host", "a"), ("dc", "x"))),
        RawSeries("cpu", (("dc", "x"), ("host", "a"))),
        RawSeries("cpu", (("dc", "x"), ("empty", ""), ("host", "a"))),
    ]
    batch = decoded([(raw, NOW_US - i, float(i)) for i, raw in enumerate(spellings)])
    result = validate(batch, SeriesRules(Limits()), NOW_US, WINDOW_US)
    assert {s.key for s in result.series} == {SeriesKey("cpu", (("dc", "x"), ("host", "a")))}
    assert len({s.route for s in result.series}) == 1
    assert sorted(result.values.tolist()) == [0.0, 1.0, 2.0]
    assert int(result.counts.sum()) == 3


def test_decode_problems_take_precedence_over_series_and_time_checks() -> None:
    bad = RawSeries("bad-name", ())
    batch = decoded(
        [
            (bad, 0, math.nan),
            (RawSeries("m", ()), NOW_US + 10 * FUTURE_US, 1.0),
            (RawSeries("m", ()), NOW_US, 2.0),
        ],
        problems={0: "invalid_timestamp", 1: "native_histogram_unsupported"},
    )
    result = validate(batch, SeriesRules(Limits()), NOW_US, WINDOW_US)
    assert result.rejections == [
        Rejection(0, "invalid_timestamp"),
        Rejection(1, "native_histogram_unsupported"),
    ]
    assert result.times_us.tolist() == [NOW_US]
    assert result.batch_time_us == NOW_US  # problem rows' placeholder times are not times


def test_decoded_json_flows_through_validation() -> None:
    t = NOW_US / 1e6
    body = (
        b'{"metrics":['
        b'{"name":"cpu","labels":{"host":"a"},"value":1,"timestamp":%.6f},'
        b'"junk",'
        b'{"name":"cpu","labels":{"__name__":"x"},"value":1,"timestamp":%.6f},'
        b'{"name":"cpu","labels":{"host":"a"},"value":"abc","timestamp":%.6f},'
        b'{"name":"cpu","labels":{"host":"a"},"value":"+Inf","timestamp":%.6f}'
        b"]}"
    ) % (t - 1, t, t, t)
    result = validate(decode_ingest(body, JSON), SeriesRules(Limits()), NOW_US, WINDOW_US)
    assert result.rejections == [
        Rejection(1, "malformed_metric"),
        Rejection(2, "invalid_label_name"),
        Rejection(3, "invalid_value"),
    ]
    assert [s.key for s in result.series] == [SeriesKey("cpu", (("host", "a"),))]
    assert result.times_us.tolist() == [NOW_US - 1_000_000, NOW_US]
    assert result.values.tolist() == [1.0, math.inf]


@pytest.mark.parametrize(
    ("labels", "code"),
    [
        ([("__name__", "up"), ("job", "a"), ("job", "b")], "duplicate_label_name"),
        # Prometheus refuses a series with two names; neither "up" nor "down" is kept.
        ([("__name__", "up"), ("__name__", "down"), ("job", "a")], "invalid_label_name"),
    ],
)
def test_remote_write_repeated_label_names_are_rejected(
    labels: list[tuple[str, str]], code: str
) -> None:
    request = remote_pb2.WriteRequest()
    series = request.timeseries.add()
    for name, value in labels:
        series.labels.add(name=name, value=value)
    series.samples.add(value=1.0, timestamp=NOW_US // 1000)
    decoded_batch = decode_remote_write(request.SerializeToString())
    result = validate(decoded_batch, SeriesRules(Limits()), NOW_US, WINDOW_US)
    assert result.accepted == 0
    assert result.rejections == [Rejection(0, code)]
    assert [r.index for r in result.rejections] == [0]
    assert result.rejections[0].code in ("duplicate_label_name", "invalid_label_name")


def test_batch_time_is_stable_when_a_retry_finds_samples_too_old() -> None:
    rows = [
        (RawSeries("m", (("i", "0"),)), NOW_US - 50 * 60 * 1_000_000, 1.0),
        (RawSeries("m", (("i", "1"),)), NOW_US - 10 * 60 * 1_000_000, 2.0),
        (RawSeries("bad-name", ()), NOW_US - 55 * 60 * 1_000_000, 3.0),
        (RawSeries("m", (("i", "2"),)), 0, math.nan),
    ]
    rules = SeriesRules(Limits())
    first = validate(decoded(rows, {3: "invalid_value"}), rules, NOW_US, WINDOW_US)
    retry_at = NOW_US + 20 * 60 * 1_000_000  # the earliest sample is now out of the window
    retry = validate(decoded(rows, {3: "invalid_value"}), rules, retry_at, WINDOW_US)
    assert first.accepted == 2 and retry.accepted == 1
    assert first.batch_time_us == retry.batch_time_us == NOW_US - 10 * 60 * 1_000_000


def test_batch_time_never_lies_outside_the_accepted_window() -> None:
    rows = [
        (RawSeries("m", (("i", "0"),)), NOW_US - 100 * WINDOW_US, 1.0),  # too old
        (RawSeries("m", (("i", "1"),)), NOW_US - 1, 2.0),
        (RawSeries("m", (("i", "2"),)), NOW_US + 1000 * WINDOW_US, 3.0),  # in the future
    ]
    result = validate(decoded(rows), SeriesRules(Limits()), NOW_US, WINDOW_US)
    assert result.accepted == 1 and result.batch_time_us == NOW_US - 1


@pytest.mark.parametrize(
    ("rows", "problems"),
    [
        ([], {}),
        ([(RawSeries("m", ()), 0, math.nan)], {0: "invalid_value"}),
        ([(RawSeries("bad-name", ()), NOW_US, 1.0)], {}),
    ],
)
def test_batches_with_nothing_accepted(
    rows: list[tuple[RawSeries, int, float]], problems: dict[int, str]
) -> None:
    result = validate(decoded(rows, problems), SeriesRules(Limits()), NOW_US, WINDOW_US)
    assert result.accepted == 0 and result.series == [] and result.counts.tolist() == []
    assert len(result.rejections) == len(rows)
    assert result.batch_time_us == (NOW_US if rows and not problems else 0)


def test_validation_does_not_mutate_the_decoded_batch() -> None:
    batch = decoded(
        [(RawSeries("m", ()), NOW_US, 1.0), (RawSeries("m", ()), 0, math.nan)],
        {1: "invalid_value"},
    )
    before = (batch.series_index.copy(), batch.times_us.copy(), batch.values.copy())
    first = validate(batch, SeriesRules(Limits()), NOW_US, WINDOW_US)
    second = validate(batch, SeriesRules(Limits()), NOW_US, WINDOW_US)
    assert first.rejections == second.rejections == [Rejection(1, "invalid_value")]
    assert batch.problems == {1: "invalid_value"}
    for array, copy in zip((batch.series_index, batch.times_us, batch.values), before, strict=True):
        np.testing.assert_array_equal(array, copy)


def test_huge_series_are_checked_but_never_cached() -> None:
    rules = SeriesRules(Limits(max_label_value_length=10_000))
    huge = RawSeries("m", (("blob", "x" * 5_000),))
    assert isinstance(rules.check(huge), AcceptedSeries)
    assert isinstance(rules.check(huge), AcceptedSeries)
    assert huge not in rules._verdicts  # internal, read on purpose: the bound under test
