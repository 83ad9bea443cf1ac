"""Per-sample validation: Prometheus naming rules, label limits, the tenant's time window.

A bad sample is rejected with a code and its index in the request; the rest of the
batch goes on. Series checks are cached per distinct series, since agents send the
same series every interval and most of a batch's cost would otherwise be re-checking
names that were fine ten seconds ago.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ingest.decoding import DecodedBatch, RawSeries
from ingest.envelope_wire import series_wire
from storage.series import SeriesKey

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

# Every code a rejection can carry, with what it means; the API documents these.
REJECTION_CODES = {
    "malformed_metric": "the metric entry is not an object",
    "invalid_metric_name": "the metric name is missing or breaks [a-zA-Z_:][a-zA-Z0-9_:]*",
    "invalid_labels": "labels must be an object of string values",
    "invalid_label_name": "a label name breaks [a-zA-Z_][a-zA-Z0-9_]* or is __name__",
    "duplicate_label_name": "a label name occurs twice in one series",
    "too_many_labels": "the series has more labels than allowed",
    "label_name_too_long": "a label or metric name is longer than allowed",
    "label_value_too_long": "a label value is longer than allowed",
    "invalid_label_value": "a label value contains a NUL character",
    "invalid_value": "the value is not a number, NaN, +Inf or -Inf",
    "invalid_timestamp": "the timestamp is missing, not finite or out of range",
    "sample_too_old": "older than the tenant's out-of-order window; do not retry",
    "sample_in_future": "too far ahead of the server's clock",
    "native_histogram_unsupported": "native histograms are not stored; use classic buckets",
}


@dataclass(frozen=True, slots=True)
class Limits:
    """What a series and a sample may be."""

    max_labels: int = 30
    max_label_name_length: int = 1024
    max_label_value_length: int = 2048
    max_future_us: int = 10 * 60 * 1_000_000


@dataclass(frozen=True, slots=True)
class Rejection:
    """One rejected sample: its index in the request and why."""

    index: int
    code: str


@dataclass(frozen=True, slots=True)
class AcceptedSeries:
    """A valid series in canonical form: its fingerprint, a stable 64-bit hash for
    partitioning, and its bus encoding, computed once while the verdict is cached."""

    key: SeriesKey
    fingerprint: bytes
    route: int
    wire: bytes


@dataclass
class ValidatedBatch:
    """The accepted samples grouped by series, and every rejection in request order."""

    series: list[AcceptedSeries]
    counts: npt.NDArray[np.int64]
    times_us: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    rejections: list[Rejection]
    batch_time_us: int

    @property
    def accepted(self) -> int:
        """How many samples were accepted."""
        return len(self.times_us)


class SeriesRules:
    """Checks series against naming rules and limits, remembering recent verdicts."""

    def __init__(self, limits: Limits, max_cached: int = 1_000_000) -> None:
        self.limits = limits
        self._max_cached = max_cached
        self._verdicts: dict[RawSeries, AcceptedSeries | str] = {}

    def check(self, series: RawSeries) -> AcceptedSeries | str:
        """The canonical series, or the rejection code that applies to all its samples."""
        verdict = self._verdicts.get(series)
        if verdict is None:
            verdict = self._check(series)
            if series.cacheable:
                if len(self._verdicts) >= self._max_cached:
                    self._verdicts.clear()
                self._verdicts[series] = verdict
        return verdict

    def _check(self, series: RawSeries) -> AcceptedSeries | str:
        limits = self.limits
        if not METRIC_NAME.fullmatch(series.metric):
            return "invalid_metric_name"
        if len(series.metric) > limits.max_label_name_length:
            return "label_name_too_long"
        # An empty label value means the label is absent, as in Prometheus.
        labels = sorted((name, value) for name, value in series.labels if value)
        if len(labels) > limits.max_labels:
            return "too_many_labels"
        previous = None
        for name, value in labels:
            if name == previous:
                return "duplicate_label_name"
            previous = name
            if not LABEL_NAME.fullmatch(name) or name == "__name__":
                return "invalid_label_name"
            if len(name) > limits.max_label_name_length:
                return "label_name_too_long"
            if len(value) > limits.max_label_value_length:
                return "label_value_too_long"
            if "\x00" in value:
                return "invalid_label_value"
        key = SeriesKey(series.metric, tuple(labels))
        fingerprint = key.fingerprint()
        route = int.from_bytes(hashlib.blake2b(fingerprint, digest_size=8).digest())
        return AcceptedSeries(key, fingerprint, route, series_wire(key))


def validate(
    batch: DecodedBatch, rules: SeriesRules, now_us: int, window_us: int
) -> ValidatedBatch:
    """Split a decoded batch into accepted samples and rejections.

    Samples older than `now_us - window_us` are `sample_too_old`; samples more than the
    limit ahead of `now_us` are `sample_in_future`.
    """
    verdicts = [rules.check(series) for series in batch.series]
    codes = np.array(
        ["" if isinstance(verdict, AcceptedSeries) else verdict for verdict in verdicts] or [""],
        dtype=object,
    )
    sample_codes = codes[batch.series_index] if batch.samples else np.empty(0, object)
    for index, code in batch.problems.items():
        sample_codes[index] = code
    ok = sample_codes == ""
    times = batch.times_us
    too_old = ok & (times < now_us - window_us)
    in_future = ok & (times > now_us + rules.limits.max_future_us)
    sample_codes[too_old] = "sample_too_old"
    sample_codes[in_future] = "sample_in_future"
    ok &= ~(too_old | in_future)

    rejected = np.flatnonzero(~ok)
    rejections = [
        Rejection(int(index), str(code))
        for index, code in zip(rejected.tolist(), sample_codes[rejected].tolist(), strict=True)
    ]
    # The ledger's batch time must be the same on every retry of this request and lie
    # near now: the latest usable sample that is not in the future. A retry can only
    # turn future samples into present ones, never the reverse, and any accepted
    # sample bounds it from below, so no request can place a ledger row in the past.
    usable = np.ones(batch.samples, bool)
    if batch.problems:
        usable[list(batch.problems)] = False
    usable &= times <= now_us + rules.limits.max_future_us
    batch_time_us = int(times[usable].max()) if usable.any() else 0

    accepted = np.flatnonzero(ok)
    order = accepted[np.argsort(batch.series_index[accepted], kind="stable")]
    series_of = batch.series_index[order]
    present, counts = np.unique(series_of, return_counts=True)
    return ValidatedBatch(
        series=[
            verdict
            for index in present.tolist()
            if isinstance(verdict := verdicts[index], AcceptedSeries)
        ],
        counts=counts.astype(np.int64),
        times_us=times[order],
        values=batch.values[order],
        rejections=rejections,
        batch_time_us=batch_time_us,
    )
