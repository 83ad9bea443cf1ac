"""Debian's `promtool query instant|range` (2.42) works against Vigil's Prometheus API.

Credentials: promtool 2.42 has no `--http.config.file`. `query range` sends extra
headers (`--header 'Authorization=Bearer <key>'`); `query instant` has no header flag,
and the only credentials it can send are the URL's user info, which Go's HTTP client
turns into `Authorization: Basic base64(user:password)`. So the instant queries here
authenticate as `http://promtool:<api key>@host`, which Vigil must accept as the key.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from storage import tenants
from storage.database import connect
from storage.samples import SampleWriter
from storage.series import SeriesCatalog
from tests.live_servers import api_server
from tests.querylang.comparison_data import T0_MS, Series, vigil_batch
from vigil.settings import Settings

PROMTOOL = Path("/usr/bin/promtool")
T0 = T0_MS // 1000

# Two gauges on an exact 15 s grid for ten minutes: host a counts 0, 1, 2, …; b 100.5, …
DATA = [
    Series.of("promtool_demo", {"host": host}, [(T0_MS + i * 15_000, base + i) for i in range(41)])
    for host, base in (("a", 0.0), ("b", 100.5))
]


@dataclass(frozen=True)
class Vigil:
    """A live Vigil API and the API key of a tenant holding DATA."""

    base_url: str
    key: str

    def with_key_in_url(self) -> str:
        """The base URL carrying the key as Basic credentials (user `promtool`)."""
        parts = urlsplit(self.base_url)
        return urlunsplit(parts._replace(netloc=f"promtool:{self.key}@{parts.netloc}"))


@pytest.fixture(scope="module")
def vigil(settings: Settings, database_url: str) -> Iterator[Vigil]:
    """A tenant holding DATA, and the API serving it."""
    with connect(database_url) as conn:
        issued = tenants.create_tenant(conn, f"promtool-{uuid.uuid4().hex[:12]}")
        SampleWriter(SeriesCatalog()).write(conn, vigil_batch(issued.tenant.id, DATA))
    with api_server(settings) as base_url:
        yield Vigil(base_url, issued.key)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `promtool query …`; its output and exit status."""
    if not PROMTOOL.exists():
        pytest.fail(f"{PROMTOOL} is missing; `make test` installs it via ops/install")
    return subprocess.run(
        [str(PROMTOOL), "query", *args], capture_output=True, text=True, timeout=30, check=False
    )


def series_blocks(output: str) -> list[str]:
    """promtool's text output cut into one block per series, sorted (series order is free)."""
    blocks: list[list[str]] = []
    for line in output.splitlines():
        if not blocks or " => " in line or line.endswith(" =>") or line.startswith("scalar:"):
            blocks.append([line])
        else:
            blocks[-1].append(line)
    return sorted("\n".join(block) for block in blocks)


INSTANT_CASES = [
    (
        "promtool_demo",
        [
            'promtool_demo{host="a"} => 4 @[1700000060]',
            'promtool_demo{host="b"} => 104.5 @[1700000060]',
        ],
    ),
    ("sum(promtool_demo)", ["{} => 108.5 @[1700000060]"]),
    ('promtool_demo{host="b"} - 0.5', ['{host="b"} => 104 @[1700000060]']),
    ("scalar(sum(promtool_demo))", ["scalar: 108.5 @[1700000060]"]),
    (
        'promtool_demo{host="a"}[1m]',
        [
            'promtool_demo{host="a"} =>\n0 @[1700000000]\n1 @[1700000015]\n2 @[1700000030]\n'
            "3 @[1700000045]\n4 @[1700000060]"
        ],
    ),
]


@pytest.mark.parametrize(("expr", "expected"), INSTANT_CASES, ids=[c[0] for c in INSTANT_CASES])
def test_promtool_query_instant(vigil: Vigil, expr: str, expected: list[str]) -> None:
    result = promtool("instant", f"--time={T0 + 60}", vigil.with_key_in_url(), expr)
    assert result.returncode == 0, result.stderr
    assert series_blocks(result.stdout) == sorted(expected)


def test_promtool_query_range(vigil: Vigil) -> None:
    result = promtool(
        "range",
        f"--header=Authorization=Bearer {vigil.key}",
        f"--start={T0}",
        f"--end={T0 + 120}",
        "--step=30s",
        vigil.base_url,
        "promtool_demo",
    )
    assert result.returncode == 0, result.stderr
    assert series_blocks(result.stdout) == [
        'promtool_demo{host="a"} =>\n0 @[1700000000]\n2 @[1700000030]\n4 @[1700000060]\n'
        "6 @[1700000090]\n8 @[1700000120]",
        'promtool_demo{host="b"} =>\n100.5 @[1700000000]\n102.5 @[1700000030]\n'
        "104.5 @[1700000060]\n106.5 @[1700000090]\n108.5 @[1700000120]",
    ]


def test_promtool_query_range_as_json(vigil: Vigil) -> None:
    result = promtool(
        "range",
        "--format=json",
        f"--header=Authorization=Bearer {vigil.key}",
        f"--start={T0 + 600}",
        f"--end={T0 + 1200}",
        "--step=5m",
        vigil.base_url,
        "sum(rate(promtool_demo[2m]))",
    )
    assert result.returncode == 0, result.stderr
    # Both gauges grow by 1 per 15 s; at 15 m and 20 m they have been silent > 5 m.
    assert json.loads(result.stdout) == [{"metric": {}, "values": [[T0 + 600, str(2 / 15)]]}]


def test_promtool_reports_a_query_error(vigil: Vigil) -> None:
    result = promtool("instant", f"--time={T0}", vigil.with_key_in_url(), "rate(promtool_demo[5m")
    assert result.returncode == 1
    assert "bad_data" in result.stderr


def test_promtool_without_credentials_is_refused(vigil: Vigil) -> None:
    result = promtool("instant", f"--time={T0}", vigil.base_url, "promtool_demo")
    assert result.returncode == 1
    assert result.stdout == ""
