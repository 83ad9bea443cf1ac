"""Samples held in memory as a `SampleSource`: PromQL evaluation without a server.

`MemorySource` answers the three selections of the protocol with the very points
`DatabaseSource` would return for the same samples (tests/querylang/
test_sample_source_contract.py runs one set of cases against both), so the
Prometheus-style case files (tests/querylang/promql/) and alert-rule unit tests (like
`promtool test rules`) exercise the evaluator exactly as production reads it:

- matchers as Prometheus (and the compiler's SQL) apply them: `=`, `!=`, `=~`, `!~`,
  regexes fully anchored, in RE2 (`querylang.regex.matcher_regex`), a missing label
  equal to "";
- `instant`: the latest sample of each step interval (t[k-1], t[k]] within
  [start - lookback, end], as compile_instant's `date_bin` + `last()` reduces them;
- `range`: every sample in [start - range, end];
- `rollup`: the tier's buckets (end - width, end] ending in (low, high], computed from
  the raw samples the way storage/rollups.sql builds each tier from the one below
  (1m from raw, 1h from 1m, 1d from 1h), as if every tier were materialised.

Values are kept bit for bit, so stale markers (one NaN payload) stay stale markers.
Query limits (series and sample budgets, deadlines) are DatabaseSource's business and
are not applied here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from querylang import ast
from querylang.compiler import ROLLUP_COLUMNS
from querylang.evaluator.values import STALE_NAN_BITS
from querylang.regex import matcher_regex
from querylang.timegrid import TimeGrid
from storage.selections import SelectedColumns, SelectedSeries
from storage.tiers import TIERS, Tier

_Times = npt.NDArray[np.int64]
_Values = npt.NDArray[np.float64]
_Columns = dict[str, npt.NDArray[Any]]


@dataclass(frozen=True)
class StoredSeries:
    """One series held in memory: metric, labels (no `__name__`, no empty values)
    and its samples in strictly increasing time order."""

    metric: str
    labels: Mapping[str, str]
    times_us: _Times
    values: _Values


class MemorySource:
    """Series in memory, selected as the database selects them (see the module
    docstring); a drop-in `SampleSource` for evaluating PromQL in tests."""

    def __init__(self, series: Iterable[StoredSeries] = ()) -> None:
        self._series: dict[tuple[str, tuple[tuple[str, str], ...]], StoredSeries] = {}
        for item in series:
            self.add(item.metric, item.labels, item.times_us, item.values)

    @property
    def series(self) -> tuple[StoredSeries, ...]:
        """Every series held, in the order first added."""
        return tuple(self._series.values())

    def add(
        self,
        metric: str,
        labels: Mapping[str, str],
        times_us: npt.ArrayLike,
        values: npt.ArrayLike,
    ) -> None:
        """Add samples (Unix µs, float64 values) to a series, creating it on first use.

        A label with an empty value is dropped, as ingestion drops it (Prometheus: an
        empty label is an absent one). A time the series already holds, or twice in
        `times_us`, is a ValueError: a series has one sample per time."""
        times = np.asarray(times_us, dtype=np.int64).copy()
        vals = np.asarray(values, dtype=np.float64).copy()
        if times.ndim != 1 or times.shape != vals.shape:
            raise ValueError("times_us and values must be 1-d arrays of one length")
        kept = tuple(sorted((name, value) for name, value in labels.items() if value))
        if any(name == "__name__" for name, _ in kept):
            raise ValueError("the metric name is `metric`, not a `__name__` label")
        key = (metric, kept)
        held = self._series.get(key)
        if held is not None:
            times = np.concatenate([held.times_us, times])
            vals = np.concatenate([held.values, vals])
        order = np.argsort(times, kind="stable")
        times, vals = times[order], vals[order]
        if len(times) > 1 and (np.diff(times) == 0).any():
            repeated = int(times[1:][np.diff(times) == 0][0])
            raise ValueError(f"{metric}{dict(kept)} has two samples at {repeated} µs")
        self._series[key] = StoredSeries(metric, dict(kept), times, vals)

    def clear(self) -> None:
        """Forget every series."""
        self._series.clear()

    def instant(
        self, matchers: tuple[ast.Matcher, ...], grid: TimeGrid, lookback_us: int
    ) -> Sequence[SelectedSeries]:
        """The latest sample of each step interval (t[k-1], t[k]] within
        [start - lookback, end] (one interval, [start - lookback, start], for a
        single-step grid), per matching series that has one."""
        step = grid.step_us if grid.count > 1 else lookback_us + 1
        found = []
        for series, times, values in self._within(
            matchers, grid.start_us - lookback_us, grid.end_us
        ):
            # compile_instant's date_bin: origin 1 µs after t[0], so bins are (t[k-1], t[k]].
            bins = (times - (grid.start_us + 1)) // step
            last = np.flatnonzero(np.append(bins[1:] != bins[:-1], True))
            found.append(
                SelectedSeries(series.metric, dict(series.labels), times[last], values[last])
            )
        return found

    def range(
        self, matchers: tuple[ast.Matcher, ...], grid: TimeGrid, range_us: int
    ) -> Sequence[SelectedSeries]:
        """Every sample in [start - range, end], per matching series that has one."""
        return [
            SelectedSeries(series.metric, dict(series.labels), times, values)
            for series, times, values in self._within(
                matchers, grid.start_us - range_us, grid.end_us
            )
        ]

    def rollup(
        self,
        matchers: tuple[ast.Matcher, ...],
        tier: Tier,
        columns: tuple[str, ...],
        low_us: int,
        high_us: int,
    ) -> Sequence[SelectedColumns]:
        """Per matching series with one, the bucket end and `columns` of every `tier`
        bucket ending in (low, high], in bucket order (times as Unix µs, `samples`
        as float64, as the database packs them)."""
        chosen = ("bucket", *columns)
        unknown = [name for name in chosen if name not in ROLLUP_COLUMNS]
        if unknown:
            raise ValueError(f"not rollup columns: {unknown}")
        if tier.is_raw:
            raise ValueError("raw samples have no rollup buckets")
        found = []
        for series in self._matching(matchers):
            buckets = _tier_buckets(tier, series.times_us, series.values)
            inside = (buckets["bucket"] > low_us) & (buckets["bucket"] <= high_us)
            if not inside.any():
                continue
            selected = tuple(
                buckets[name][inside].astype(
                    np.int64 if ROLLUP_COLUMNS[name] == "t" else np.float64
                )
                for name in chosen
            )
            found.append(SelectedColumns(series.metric, dict(series.labels), selected))
        return found

    def _matching(self, matchers: tuple[ast.Matcher, ...]) -> Iterator[StoredSeries]:
        compiled = [(m, _predicate(m)) for m in matchers]
        for series in self._series.values():
            if all(
                test(series.metric if m.name == "__name__" else series.labels.get(m.name, ""))
                for m, test in compiled
            ):
                yield series

    def _within(
        self, matchers: tuple[ast.Matcher, ...], low_us: int, high_us: int
    ) -> Iterator[tuple[StoredSeries, _Times, _Values]]:
        """Each matching series with its samples in [low, high], if it has any."""
        for series in self._matching(matchers):
            start = np.searchsorted(series.times_us, low_us, side="left")
            stop = np.searchsorted(series.times_us, high_us, side="right")
            if stop > start:
                yield (
                    series,
                    series.times_us[start:stop].copy(),
                    series.values[start:stop].copy(),
                )


def _predicate(matcher: ast.Matcher) -> Callable[[str], bool]:
    """A test of one label value (the metric name for `__name__`)."""
    if matcher.op in (ast.MatchOp.RE, ast.MatchOp.NRE):
        regex = matcher_regex(matcher.value)
        wanted = matcher.op is ast.MatchOp.RE
        return lambda value: regex.matches(value) == wanted
    if matcher.op is ast.MatchOp.EQ:
        return lambda value: value == matcher.value
    return lambda value: value != matcher.value


def _tier_buckets(tier: Tier, times_us: _Times, values: _Values) -> _Columns:
    """Every bucket of `tier` that holds samples, built from the tier below as
    storage/rollups.sql builds it (1m from raw samples, coarser from finer)."""
    assert tier.source is not None
    if tier.source == "raw":
        fresh = values.view(np.uint64) != np.uint64(STALE_NAN_BITS)
        return _from_raw(tier, times_us[fresh], values[fresh])
    return _from_finer(tier, _tier_buckets(TIERS[tier.source], times_us, values))


def _groups(ends: _Times) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Start and stop index of each run of equal bucket ends (ends ascending)."""
    changes = np.ones(len(ends), dtype=bool)
    changes[1:] = ends[1:] != ends[:-1]
    starts = np.flatnonzero(changes)
    return starts, np.append(starts[1:], len(ends)).astype(np.intp)


def _corrections(
    previous: _Values, current: _Values, same_bucket: npt.NDArray[np.bool_]
) -> _Values:
    """Prometheus's counter-reset correction of each pair: the previous value where
    the value dropped (Go's comparison: false whenever NaN is involved)."""
    with np.errstate(invalid="ignore"):
        dropped = same_bucket & (current < previous)
    return np.where(dropped, previous, 0.0)


def _from_raw(tier: Tier, times: _Times, values: _Values) -> _Columns:
    """rollup_from_raw: one row per bucket of raw samples (stale markers removed)."""
    ends = tier.bucket_end(times)
    starts, stops = _groups(ends)
    if not len(starts):
        return {name: np.empty(0) for name in ROLLUP_COLUMNS}
    correction = np.zeros(len(values))
    if len(values) > 1:
        correction[1:] = _corrections(values[:-1], values[1:], ends[1:] == ends[:-1])
    with np.errstate(invalid="ignore", over="ignore"):
        first, last = values[starts], values[stops - 1]
        reset = np.add.reduceat(correction, starts)
        return {
            "bucket": ends[starts],
            "samples": (stops - starts).astype(np.float64),
            "sum": np.add.reduceat(values, starts),
            "min": np.fmin.reduceat(values, starts),
            "max": np.fmax.reduceat(values, starts),
            "first_time": times[starts],
            "first_value": first,
            "last_time": times[stops - 1],
            "last_value": last,
            "reset_correction": reset,
            "increase": last - first + reset,
        }


def _from_finer(tier: Tier, finer: _Columns) -> _Columns:
    """rollup_from_tier: one row per coarse bucket of finer rows; a drop from one
    finer bucket's last value to the next one's first is a reset like any other."""
    ends = tier.bucket_end(finer["bucket"].astype(np.int64))
    starts, stops = _groups(ends)
    if not len(starts):
        return {name: np.empty(0) for name in ROLLUP_COLUMNS}
    boundary = np.zeros(len(ends))
    if len(ends) > 1:
        boundary[1:] = _corrections(
            finer["last_value"][:-1], finer["first_value"][1:], ends[1:] == ends[:-1]
        )
    with np.errstate(invalid="ignore", over="ignore"):
        first, last = finer["first_value"][starts], finer["last_value"][stops - 1]
        reset = np.add.reduceat(finer["reset_correction"] + boundary, starts)
        return {
            "bucket": ends[starts],
            "samples": np.add.reduceat(finer["samples"], starts),
            "sum": np.add.reduceat(finer["sum"], starts),
            "min": np.fmin.reduceat(finer["min"], starts),
            "max": np.fmax.reduceat(finer["max"], starts),
            "first_time": finer["first_time"][starts],
            "first_value": first,
            "last_time": finer["last_time"][stops - 1],
            "last_value": last,
            "reset_correction": reset,
            "increase": last - first + reset,
        }
