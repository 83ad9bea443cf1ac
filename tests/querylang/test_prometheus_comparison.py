"""Vigil's PromQL answers equal real Prometheus's, query by query, over the same data.

The data (comparison_data.py) is remote-written into Prometheus 2.42 and written into
Vigil's store through its sample writer (the HTTP ingest path refuses samples this
old); each line of comparison_queries.txt is then asked of both HTTP APIs, and so are a
few /series, /labels and /label/<name>/values requests.
"""

from __future__ import annotations

import math
import re
import struct
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest

from storage import tenants
from storage.database import connect
from storage.samples import SampleWriter
from storage.series import SeriesCatalog
from tests.live_servers import api_server, client
from tests.querylang.comparison_data import (
    SPAN_MS,
    STALE_NAN_BITS,
    T0_MS,
    dataset,
    vigil_batch,
)
from tests.querylang.prometheus_reference import (
    Params,
    PrometheusReference,
    ask,
    running_prometheus,
)
from vigil.settings import Settings

QUERIES_FILE = Path(__file__).with_name("comparison_queries.txt")
FLAGS = frozenset({"error", "empty", "ordered"})
RELATIVE_TOLERANCE = 1e-9
ABSOLUTE_TOLERANCE = 1e-12

_DURATION = re.compile(r"(?P<sign>-?)(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+(?:\.\d+)?)s)?")
_SECONDS = re.compile(r"-?\d+(?:\.\d+)?")


@dataclass(frozen=True)
class Case:
    """One line of the query file: a query and when it is evaluated."""

    kind: Literal["instant", "range"]
    query: str
    start_ms: int
    end_ms: int
    step_ms: int
    flags: frozenset[str]
    line: int
    xfail: str | None = None

    @property
    def id(self) -> str:
        """The test id: the query, then when it is evaluated."""
        if self.kind == "instant":
            return f"{self.query} @instant {seconds(self.start_ms - T0_MS)}"
        span = f"{seconds(self.start_ms - T0_MS)}..{seconds(self.end_ms - T0_MS)}"
        return f"{self.query} @range {span} step {seconds(self.step_ms)}"

    @property
    def method(self) -> str:
        """Half the cases ask by POST with RFC 3339 times and duration steps, as promtool and
        Grafana may; the other half by GET with Unix seconds, as the Prometheus UI does."""
        return "POST" if self.line % 2 == 0 else "GET"

    def request(self) -> tuple[str, str, Params]:
        """The HTTP method, API path and parameters that ask this query."""
        at, step = (rfc3339, duration) if self.method == "POST" else (seconds, seconds)
        if self.kind == "instant":
            return (
                self.method,
                "/api/v1/query",
                (("query", self.query), ("time", at(self.start_ms))),
            )
        return (
            self.method,
            "/api/v1/query_range",
            (
                ("query", self.query),
                ("start", at(self.start_ms)),
                ("end", at(self.end_ms)),
                ("step", step(self.step_ms)),
            ),
        )


def seconds(ms: int) -> str:
    """Milliseconds as decimal seconds without trailing zeros: 1700000015500 → 1700000015.5."""
    return format(Decimal(ms).scaleb(-3).normalize(), "f")


def rfc3339(ms: int) -> str:
    """Milliseconds as an RFC 3339 UTC time: 1700000015500 → 2023-11-14T22:13:35.500Z."""
    moment = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
    return moment.replace("+00:00", "Z")


def duration(ms: int) -> str:
    """Milliseconds as a Prometheus duration: 60000 → 60s, 500 → 500ms."""
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def offset_ms(text: str) -> int:
    """A time offset or step: `1h30m`, `45m7.5s`, `-10m`, `0` or plain seconds `2700.25`."""
    if _SECONDS.fullmatch(text):
        return round(Decimal(text) * 1000)
    found = _DURATION.fullmatch(text)
    if found is None or not any(found.group(unit) for unit in "hms"):
        raise ValueError(f"not a duration: {text!r}")
    ms = (
        Decimal(found.group("h") or 0) * 3_600_000
        + Decimal(found.group("m") or 0) * 60_000
        + Decimal(found.group("s") or 0) * 1000
    )
    return round(-ms if found.group("sign") else ms)


def read_cases(path: Path = QUERIES_FILE) -> list[Case]:
    """Every query of the file, with the xfail reason a preceding `!xfail` line gives."""
    cases: list[Case] = []
    xfail: str | None = None
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("!xfail"):
            xfail = line.removeprefix("!xfail").strip() or None
            if xfail is None:
                raise ValueError(f"{path.name}:{number}: !xfail needs a reason")
            continue
        head, _, rest = line.partition(" ")
        kind, *flags = head.split("+")
        if kind not in ("instant", "range") or not FLAGS.issuperset(flags):
            raise ValueError(f"{path.name}:{number}: expected instant|range[+flags], got {head}")
        try:
            if kind == "instant":
                at, query = rest.strip().split(None, 1)
                start = end = T0_MS + offset_ms(at)
                step = 0
            else:
                first, last, every, query = rest.strip().split(None, 3)
                start, end = T0_MS + offset_ms(first), T0_MS + offset_ms(last)
                step = offset_ms(every)
        except ValueError as exc:
            raise ValueError(f"{path.name}:{number}: {exc}: {line}") from exc
        cases.append(
            Case(
                "instant" if kind == "instant" else "range",
                query.strip(),
                start,
                end,
                step,
                frozenset(flags),
                number,
                xfail,
            )
        )
        xfail = None
    return cases


CASES = read_cases()

Labels = frozenset[tuple[str, str]]


@dataclass
class Answer:
    """An API answer reduced to what the comparison looks at."""

    error_type: str | None = None
    error: str = ""
    status: int = 200
    result_type: str = ""
    # Each label set's points as (Unix ms, value); scalars and strings have one empty set.
    series: dict[Labels, list[tuple[int, float | str]]] = field(default_factory=dict)
    # Result order: each entry's label set, as returned.
    order: list[Labels] = field(default_factory=list)
    duplicates: list[Labels] = field(default_factory=list)
    # Non-finite values spelled otherwise than Prometheus's "NaN", "+Inf", "-Inf".
    misspelled: set[str] = field(default_factory=set)

    def describe(self, limit: int = 6) -> str:
        """A short human summary, for failure messages."""
        if self.error_type is not None:
            return f"HTTP {self.status} error {self.error_type}: {self.error}"
        lines = [f"{self.result_type} with {len(self.series)} series"]
        for labels in self.order[:limit]:
            points = self.series[labels]
            shown = ", ".join(f"{seconds(t)}={v}" for t, v in points[:4])
            more = f", … ({len(points)} points)" if len(points) > 4 else ""
            lines.append(f"  {show(labels)}: {shown}{more}")
        if len(self.order) > limit:
            lines.append(f"  … {len(self.order) - limit} more")
        return "\n".join(lines)


def show(labels: Labels) -> str:
    """A label set as PromQL writes it."""
    name = dict(labels).get("__name__", "")
    rest = ", ".join(f'{k}="{v}"' for k, v in sorted(labels) if k != "__name__")
    return f"{name}{{{rest}}}"


def parse_answer(response: httpx.Response) -> Answer:
    """The Prometheus-format envelope of a response, or an error naming what came instead."""
    try:
        body: Any = response.json()
    except ValueError:
        return Answer("not-json", repr(response.text[:200]), response.status_code)
    if not isinstance(body, dict) or body.get("status") not in ("success", "error"):
        return Answer("not-an-envelope", str(body)[:200], response.status_code)
    if body["status"] == "error":
        return Answer(str(body.get("errorType")), str(body.get("error")), response.status_code)
    data = body["data"]
    answer = Answer(result_type=data["resultType"])
    if answer.result_type in ("scalar", "string"):
        t, value = data["result"]
        parsed = number(value, answer) if answer.result_type == "scalar" else str(value)
        answer.series[frozenset()] = [(round(float(t) * 1000), parsed)]
        answer.order.append(frozenset())
        return answer
    for entry in data["result"]:
        labels: Labels = frozenset(entry["metric"].items())
        points = entry["values"] if "values" in entry else [entry["value"]]
        if labels in answer.series:
            answer.duplicates.append(labels)
        answer.series[labels] = [(round(float(t) * 1000), number(v, answer)) for t, v in points]
        answer.order.append(labels)
    return answer


def number(text: str, answer: Answer) -> float:
    """A sample value from its JSON string, noting a non-Prometheus spelling of NaN or ±Inf."""
    value = float(text)
    if not math.isfinite(value) and text not in ("NaN", "+Inf", "-Inf"):
        answer.misspelled.add(text)
    return value


def same_value(a: float | str, b: float | str) -> bool:
    """Equal within 1e-9 relative (1e-12 absolute near zero); NaN equals NaN; ±Inf exactly."""
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= max(ABSOLUTE_TOLERANCE, RELATIVE_TOLERANCE * max(abs(a), abs(b)))


def differences(expected: Answer, actual: Answer, ordered: bool) -> list[str]:
    """How Vigil's answer differs from Prometheus's; empty when they agree."""
    if expected.error_type is not None or actual.error_type is not None:
        if (expected.error_type, expected.status) == (actual.error_type, actual.status):
            return []
        return ["one answered an error and the other did not, or errorType or status differ"]
    problems = []
    if actual.misspelled:
        problems.append(f"values spelled {sorted(actual.misspelled)}, not NaN, +Inf or -Inf")
    if actual.duplicates:
        problems.append(f"label sets returned twice: {[show(ls) for ls in actual.duplicates]}")
    if expected.result_type != actual.result_type:
        problems.append(f"resultType {actual.result_type!r}, expected {expected.result_type!r}")
    missing = [ls for ls in expected.order if ls not in actual.series]
    extra = [ls for ls in actual.order if ls not in expected.series]
    if missing:
        problems.append(f"missing series: {', '.join(show(ls) for ls in missing[:5])}")
    if extra:
        problems.append(f"unexpected series: {', '.join(show(ls) for ls in extra[:5])}")
    for labels in expected.order:
        if labels not in actual.series:
            continue
        want, got = expected.series[labels], actual.series[labels]
        if [t for t, _ in want] != [t for t, _ in got]:
            only_want = sorted({t for t, _ in want} - {t for t, _ in got})[:5]
            only_got = sorted({t for t, _ in got} - {t for t, _ in want})[:5]
            problems.append(
                f"{show(labels)}: timestamps differ (only Prometheus: "
                f"{[seconds(t) for t in only_want]}, only Vigil: {[seconds(t) for t in only_got]})"
            )
            continue
        wrong = [
            (t, w, g) for (t, w), (_, g) in zip(want, got, strict=True) if not same_value(w, g)
        ]
        if wrong:
            shown = ", ".join(f"at {seconds(t)} {g} ≠ {w}" for t, w, g in wrong[:4])
            problems.append(f"{show(labels)}: {len(wrong)} values differ: {shown}")
    if ordered and not problems:
        want_values = [expected.series[ls][0][1] for ls in expected.order]
        got_values = [actual.series[ls][0][1] for ls in actual.order]
        if not all(same_value(w, g) for w, g in zip(want_values, got_values, strict=True)):
            problems.append(f"order differs: values {got_values}, expected {want_values}")
    return problems


@pytest.fixture(scope="module")
def prometheus() -> Iterator[PrometheusReference]:
    """Prometheus with the whole data set remote-written into it."""
    with running_prometheus() as reference:
        reference.push(dataset())
        yield reference


@pytest.fixture(scope="module")
def vigil_tenant(database_url: str) -> tenants.IssuedKey:
    """A tenant of its own holding the whole data set, written by Vigil's sample writer."""
    with connect(database_url) as conn:
        issued = tenants.create_tenant(conn, f"promql-comparison-{uuid.uuid4().hex[:12]}")
        SampleWriter(SeriesCatalog()).write(conn, vigil_batch(issued.tenant.id, dataset()))
    return issued


@pytest.fixture(scope="module")
def vigil(settings: Settings, vigil_tenant: tenants.IssuedKey) -> Iterator[httpx.Client]:
    """A live Vigil API, and a client authenticated as the comparison's tenant."""
    with api_server(settings) as base_url, client(base_url, vigil_tenant.key) as http:
        # A connection per query: a server that closes a connection after one query's
        # internal error must not turn the next case into a connection reset.
        http.headers["Connection"] = "close"
        yield http


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (1.0, 1.0 + 1e-10, True),
        (1.0, 1.0 + 1e-8, False),
        (1e15, 1e15 + 1e5, True),
        (0.0, 1e-13, True),
        (0.0, 1e-11, False),
        (math.nan, math.nan, True),
        (math.nan, 1.0, False),
        (math.inf, math.inf, True),
        (math.inf, -math.inf, False),
        (math.inf, 1e308, False),
    ],
)
def test_values_compare_within_tolerance(a: float, b: float, same: bool) -> None:
    assert same_value(a, b) is same
    assert same_value(b, a) is same


def _vector(*entries: tuple[dict[str, str], str]) -> httpx.Response:
    result = [{"metric": m, "value": [1700000000, v]} for m, v in entries]
    body = {"status": "success", "data": {"resultType": "vector", "result": result}}
    return httpx.Response(200, json=body)


def _error(status: int, error_type: str) -> httpx.Response:
    return httpx.Response(status, json={"status": "error", "errorType": error_type, "error": "x"})


@pytest.mark.parametrize(
    ("prometheus_says", "vigil_says", "ordered", "agree"),
    [
        (_vector(({"a": "1"}, "NaN")), _vector(({"a": "1"}, "NaN")), False, True),
        (_vector(({"a": "1"}, "+Inf")), _vector(({"a": "1"}, "inf")), False, False),
        (_vector(({"a": "1"}, "1")), _vector(({"a": "2"}, "1")), False, False),
        (_vector(({"a": "1"}, "1")), _vector(({"a": "1"}, "1"), ({"a": "1"}, "1")), False, False),
        (
            _vector(({"a": "1"}, "1"), ({"a": "2"}, "2")),
            _vector(({"a": "2"}, "2"), ({"a": "1"}, "1")),
            False,
            True,
        ),
        (
            _vector(({"a": "1"}, "1"), ({"a": "2"}, "2")),
            _vector(({"a": "2"}, "2"), ({"a": "1"}, "1")),
            True,
            False,
        ),
        (_error(422, "execution"), _error(422, "execution"), False, True),
        (_error(422, "execution"), _error(400, "bad_data"), False, False),
        (_error(400, "bad_data"), _vector(), False, False),
        (_vector(), httpx.Response(404, json={"detail": "Not Found"}), False, False),
    ],
)
def test_answers_compare_as_prometheus_defines_them(
    prometheus_says: httpx.Response, vigil_says: httpx.Response, ordered: bool, agree: bool
) -> None:
    problems = differences(parse_answer(prometheus_says), parse_answer(vigil_says), ordered)
    assert (not problems) is agree, problems


def test_the_query_file_is_broad() -> None:
    assert len(CASES) >= 150
    assert len({case.id for case in CASES}) == len(CASES), "a query line is repeated"
    text = QUERIES_FILE.read_text(encoding="utf-8")
    for word in ("offset", "@ start()", "@ end()", "group_left", "group_right", "bool", "unless"):
        assert word in text, word


def test_prometheus_answers_as_the_file_expects(prometheus: PrometheusReference) -> None:
    """Every query is accepted (or refused, or empty) by Prometheus as its flags say:
    a typo in a metric name cannot turn a case into a vacuous empty == empty."""
    wrong = []
    for case in CASES:
        answer = parse_answer(prometheus.ask(*case.request()))
        if "error" in case.flags:
            if answer.error_type is None:
                wrong.append(f"line {case.line}: expected an error: {case.query}")
            continue
        if answer.error_type is not None:
            wrong.append(f"line {case.line}: {answer.describe()}: {case.query}")
        elif ("empty" in case.flags) != (not answer.series):
            wrong.append(f"line {case.line}: empty={not answer.series}: {case.query}")
    assert not wrong, "\n".join(wrong)


def test_both_stores_hold_the_stale_markers_bit_for_bit(
    prometheus: PrometheusReference, vigil_tenant: tenants.IssuedKey, database_url: str
) -> None:
    markers = sum(1 for item in dataset() for v in item.values if _bits(v) == STALE_NAN_BITS)
    with connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM vigil.samples r JOIN vigil.series s ON s.id = r.series_id "
            "WHERE s.tenant_id = %s AND float8send(r.value) = %s",
            (vigil_tenant.tenant.id, STALE_NAN_BITS.to_bytes(8, "big")),
        ).fetchone()
    assert row is not None and row[0] == markers > 0
    # Prometheus has no API that returns raw stale markers; it shows them by staleness:
    # b1's last sample before its marker (44m45s) would still be in the 5 m lookback.
    params = (("query", 'job_up{instance="b1"}'), ("time", "1700002740"))
    answer = parse_answer(prometheus.ask("GET", "/api/v1/query", params))
    assert answer.result_type == "vector" and not answer.series


def _bits(value: float) -> int:
    return int.from_bytes(struct.pack(">d", value), "big")


def _param(case: Case) -> Any:
    marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
    return pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", [_param(case) for case in CASES])
def test_vigil_answers_like_prometheus(
    case: Case, prometheus: PrometheusReference, vigil: httpx.Client
) -> None:
    request = case.request()
    expected = parse_answer(prometheus.ask(*request))
    actual = parse_answer(ask(vigil, *request))
    ordered = "ordered" in case.flags and case.kind == "instant"
    problems = differences(expected, actual, ordered)
    assert not problems, (
        f"line {case.line}: {case.query}\n"
        + "\n".join(f"- {problem}" for problem in problems)
        + f"\nPrometheus: {expected.describe()}\nVigil: {actual.describe()}"
    )


# Metadata endpoints over the whole data range (Prometheus answers these per block, so a
# narrower range could differ for reasons of storage layout, not of semantics).
METADATA_CASES: list[tuple[str, Params]] = [
    ("/api/v1/series", (("match[]", "node_load1"),)),
    (
        "/api/v1/series",
        (("match[]", '{__name__=~"job_up|queue_depth"}'), ("match[]", 'pod_info{pod="pod-001"}')),
    ),
    ("/api/v1/series", (("match[]", "escape_test"),)),
    ("/api/v1/series", (("match[]", 'pod_info{pod=~"pod-1[2-3].*", tier!="db"}'),)),
    ("/api/v1/series", (("match[]", "nonexistent_metric"),)),
    ("/api/v1/series", ()),
    ("/api/v1/labels", ()),
    ("/api/v1/labels", (("match[]", "pod_info"),)),
    ("/api/v1/labels", (("match[]", "request_duration_seconds_bucket"), ("match[]", "dup_alpha"))),
    ("/api/v1/label/__name__/values", ()),
    ("/api/v1/label/pod/values", (("match[]", 'pod_info{namespace="ns-3"}'),)),
    ("/api/v1/label/path/values", ()),
    ("/api/v1/label/le/values", (("match[]", '{job="api"}'),)),
    ("/api/v1/label/nonexistent/values", ()),
    # Regex matchers in RE2's semantics: `.` and newlines, Unicode case folding.
    ("/api/v1/series", (("match[]", 'regex_probe{word=~".+"}'),)),
    (
        "/api/v1/series",
        (("match[]", 'regex_probe{word=~"(?i)größe"}'), ("match[]", '{word=~"(?s)line1.line2"}')),
    ),
    ("/api/v1/label/word/values", (("match[]", 'regex_probe{word=~"(?i)[ks]"}'),)),
    ("/api/v1/label/word/values", (("match[]", '{__name__=~"regex_.*", word!~".*"}'),)),
    ("/api/v1/labels", (("match[]", 'regex_probe{word=~""}'),)),
]


def metadata(response: httpx.Response) -> tuple[str, Any]:
    """A metadata answer as (errorType or "success", its data in a comparable order)."""
    body = response.json()
    if body.get("status") != "success":
        return f"{response.status_code} {body.get('errorType')}", None
    data = body["data"]
    if data and isinstance(data[0], dict):
        return "success", sorted(sorted(entry.items()) for entry in data)
    return "success", data


@pytest.mark.parametrize(
    ("path", "params"),
    METADATA_CASES,
    ids=[f"{path} {' '.join(v for _, v in params)}".strip() for path, params in METADATA_CASES],
)
def test_vigil_metadata_like_prometheus(
    path: str, params: Params, prometheus: PrometheusReference, vigil: httpx.Client
) -> None:
    window = (("start", seconds(T0_MS)), ("end", seconds(T0_MS + SPAN_MS)))
    expected = metadata(prometheus.ask("GET", path, (*params, *window)))
    assert metadata(ask(vigil, "GET", path, (*params, *window))) == expected
