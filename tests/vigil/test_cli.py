"""The `vigil` command line, run as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import numpy as np
import psycopg
import pytest

from storage import tenants
from storage.samples import SampleBatch, SampleWriter, SeriesSamples
from storage.series import SeriesCatalog, SeriesKey


def vigil(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vigil", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **env},
    )


def test_help_lists_every_command() -> None:
    done = vigil("--help")
    assert done.returncode == 0
    for command in ("services", "migrate", "tenants", "query", "up"):
        assert command in done.stdout
    tenants_help = vigil("tenants", "--help").stdout
    for command in ("create", "create-key", "list", "revoke-key"):
        assert command in tenants_help


def test_tenant_lifecycle(database_url: str, conn: psycopg.Connection) -> None:
    name = f"cli-{uuid.uuid4().hex[:10]}"
    created = vigil("tenants", "create", name, "--out-of-order-window", "6h", "--json")
    assert created.returncode == 0, created.stderr
    issued = json.loads(created.stdout)
    assert set(issued) >= {"tenant_id", "api_key", "key_id"}
    tenant = tenants.authenticate(conn, issued["api_key"])
    assert tenant is not None and str(tenant.id) == issued["tenant_id"]

    listed = json.loads(vigil("tenants", "list", "--json").stdout)
    (entry,) = [t for t in listed if t["name"] == name]
    assert entry["active_keys"] == 1 and entry["out_of_order_window_s"] == 6 * 3600
    assert name in vigil("tenants", "list").stdout

    revoked = vigil("tenants", "revoke-key", issued["key_id"])
    assert revoked.returncode == 0
    assert tenants.authenticate(conn, issued["api_key"]) is None


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["tenants", "create", "Bad Name"], {}, "invalid tenant name 'Bad Name'"),
        (["tenants", "revoke-key", "nope"], {}, "no API key with id 'nope'"),
        (["tenants", "create-key", "no-such-tenant"], {}, "no tenant named 'no-such-tenant'"),
        (["query", "up", "--tier", "5m"], {}, "'5m' is not one of raw, 1m, 1h, 1d, auto"),
        (
            ["migrate"],
            {"VIGIL_DATABASE_URL": "postgresql://vigil@127.0.0.1:1/nowhere"},
            "cannot connect to postgresql://vigil@127.0.0.1:1/nowhere",
        ),
        (
            ["migrate"],
            {"VIGIL_DATABASE_URL": "postgresql://vigil:hunter2@127.0.0.1:1/nowhere"},
            "postgresql://vigil:***@127.0.0.1:1/nowhere",
        ),
        (
            ["tenants", "list"],
            {"VIGIL_DATABASE_URL": "mysql://x"},
            "invalid setting VIGIL_DATABASE_URL: must look like postgresql://",
        ),
        (
            ["tenants", "list"],
            {"VIGIL_DATABASE_URL": "postgresql://vigil@127.0.0.1:55432/postgres"},
            'relation "vigil.tenant" does not exist: run `vigil migrate` first',
        ),
        (
            ["migrate"],
            {"VIGIL_STORAGE__SAMPLES_CHUNK_INTERVAL": "2 fortnights"},
            "invalid setting VIGIL_STORAGE__SAMPLES_CHUNK_INTERVAL:",
        ),
    ],
)
def test_expected_failures_are_one_line(
    database_url: str, args: list[str], env: dict[str, str], message: str
) -> None:
    done = vigil(*args, **env)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vigil: error: "), done.stderr
    assert message in lines[0]
    assert "hunter2" not in done.stderr


def test_duplicate_tenant_is_refused(database_url: str) -> None:
    name = f"dup-{uuid.uuid4().hex[:10]}"
    assert vigil("tenants", "create", name).returncode == 0
    done = vigil("tenants", "create", name)
    assert (done.returncode, done.stderr.strip()) == (
        1,
        f"vigil: error: tenant '{name}' already exists",
    )


def test_query_prints_a_table_and_json(database_url: str, conn: psycopg.Connection) -> None:
    issued = tenants.create_tenant(conn, f"cli-q-{uuid.uuid4().hex[:10]}")
    start_s = 1_700_000_000
    times = (start_s + np.arange(0, 600, 60, dtype=np.int64)) * 1_000_000
    series = SeriesSamples(SeriesKey.of("cli_gauge", {"host": "a"}), times, np.arange(10.0))
    batch = SampleBatch(f"cli-{uuid.uuid4()}", issued.tenant.id, [series])
    SampleWriter(SeriesCatalog()).write(conn, batch)
    window = ("--start", str(start_s), "--end", str(start_s + 540), "--step", "3m")
    args = ("query", "cli_gauge * 2", *window, "--tenant", issued.tenant.name)
    table = vigil(*args)
    assert table.returncode == 0, table.stderr
    assert '{host="a"}' in table.stdout
    assert "2023-11-14 22:19:20" in table.stdout and "12" in table.stdout
    answer = json.loads(vigil(*args, "--json").stdout)
    assert [p["value"] for p in answer["series"][0]["datapoints"]] == [0.0, 6.0, 12.0, 18.0]
    assert (answer["query"], answer["start"], answer["step"]) == ("cli_gauge * 2", start_s, 180)
    assert json.loads(vigil(*args, "--tier", "raw", "--json").stdout)["tiers"] == ["raw"]
    broken = vigil("query", "sum(", "--tenant", issued.tenant.name)
    assert broken.returncode == 1
    assert broken.stderr.startswith("vigil: error:") and "expected" in broken.stderr
