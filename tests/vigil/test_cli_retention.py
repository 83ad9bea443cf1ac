"""`vigil retention list|set|unset`, run as an operator runs it."""

from __future__ import annotations

import json
import uuid

import psycopg

from storage import tenants
from storage.retention import list_overrides
from tests.vigil.test_cli import vigil


def test_retention_round_trip(database_url: str, conn: psycopg.Connection) -> None:
    name = f"cli-{uuid.uuid4().hex[:10]}"
    tenant = tenants.create_tenant(conn, name).tenant
    tenant_args = ("--tenant", name, "--tier", "raw", "--pattern", "billing_*")

    done = vigil("retention", "set", *tenant_args, "--retention", "30d")
    assert done.returncode == 0, done.stderr
    assert [(o.tier, o.pattern) for o in list_overrides(conn, tenant.id)] == [("raw", "billing_*")]

    listed = json.loads(vigil("retention", "list", "--tenant", name, "--json").stdout)
    assert [(o["tier"], o["pattern"], o["retention"]) for o in listed] == [
        ("raw", "billing_*", "30d")
    ]
    assert "billing_*" in vigil("retention", "list", "--tenant", name).stdout

    assert vigil("retention", "unset", *tenant_args).returncode == 0
    assert list_overrides(conn, tenant.id) == []
    missing = vigil("retention", "unset", *tenant_args)
    assert missing.returncode == 1 and "no retention override" in missing.stderr


def test_bad_input_is_one_line_saying_why(database_url: str, conn: psycopg.Connection) -> None:
    name = f"cli-{uuid.uuid4().hex[:10]}"
    tenants.create_tenant(conn, name)
    for args, message in [
        (("--tier", "5m", "--pattern", "a_*", "--retention", "30d"), "unknown tier"),
        (("--tier", "raw", "--pattern", "a-*", "--retention", "30d"), "invalid metric pattern"),
        (("--tier", "raw", "--pattern", "a_*", "--retention", "soon"), "invalid retention"),
        (("--tier", "raw", "--pattern", "a_*", "--retention", "1d"), "not longer than its global"),
    ]:
        done = vigil("retention", "set", "--tenant", name, *args)
        assert done.returncode == 1 and message in done.stderr, done.stderr
    unknown = vigil("retention", "list", "--tenant", f"nobody-{uuid.uuid4().hex[:8]}")
    assert unknown.returncode == 1 and "no tenant named" in unknown.stderr
