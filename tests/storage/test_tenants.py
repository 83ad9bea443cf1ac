"""Tenants and API keys: shown once, stored hashed, revocable."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta

import psycopg
import pytest

from storage import tenants
from storage.errors import ApiKeyNotFound, InvalidTenant, TenantExists, TenantNotFound


def name() -> str:
    return f"acme-{uuid.uuid4().hex[:12]}"


def test_a_new_key_authenticates_as_its_tenant(conn: psycopg.Connection) -> None:
    issued = tenants.create_tenant(conn, name(), out_of_order_window=timedelta(hours=6))
    found = tenants.authenticate(conn, issued.key)
    assert found == issued.tenant
    assert found is not None and found.out_of_order_window == timedelta(hours=6)


def test_only_a_hash_of_the_key_is_stored(conn: psycopg.Connection) -> None:
    issued = tenants.create_tenant(conn, name())
    secret = issued.key.split("_", 2)[2]  # vgl_<key id>_<secret>; the secret may hold "_"
    assert len(secret) == 43
    dump = conn.execute(
        "SELECT string_agg(k::text, ' ') FROM vigil.api_key k WHERE tenant_id = %s",
        (issued.tenant.id,),
    ).fetchone()
    assert dump is not None and secret not in dump[0] and issued.key not in dump[0]


@pytest.mark.parametrize(
    "mangle",
    [
        lambda key: key[:-1] + ("A" if key[-1] != "A" else "B"),
        lambda key: key.replace("vgl_", "xyz_"),
        lambda key: "",
        lambda key: "vgl_000000000000_" + "A" * 43,
        lambda key: key + " ",
        lambda key: key + "\n",
    ],
    ids=["wrong secret", "wrong scheme", "empty", "unknown id", "trailing space", "newline"],
)
def test_wrong_keys_are_refused(conn: psycopg.Connection, mangle: Callable[[str], str]) -> None:
    issued = tenants.create_tenant(conn, name())
    assert tenants.authenticate(conn, mangle(issued.key)) is None


def test_revoked_keys_stop_working_and_others_keep_working(conn: psycopg.Connection) -> None:
    first = tenants.create_tenant(conn, name())
    second = tenants.create_api_key(conn, first.tenant.name)
    tenants.revoke_api_key(conn, first.key_id)
    tenants.revoke_api_key(conn, first.key_id)  # harmless twice
    assert tenants.authenticate(conn, first.key) is None
    assert tenants.authenticate(conn, second.key) == first.tenant
    listed = {s.tenant.name: s.active_keys for s in tenants.list_tenants(conn)}
    assert listed[first.tenant.name] == 1


def test_bad_requests_get_named_errors(conn: psycopg.Connection) -> None:
    existing = tenants.create_tenant(conn, name())
    with pytest.raises(TenantExists):
        tenants.create_tenant(conn, existing.tenant.name)
    with pytest.raises(InvalidTenant, match="invalid tenant name"):
        tenants.create_tenant(conn, "Has Spaces")
    with pytest.raises(InvalidTenant, match="invalid tenant name"):
        tenants.create_tenant(conn, "trailing-newline\n")
    with pytest.raises(InvalidTenant, match="positive"):
        tenants.create_tenant(conn, name(), out_of_order_window=timedelta(0))
    with pytest.raises(TenantNotFound):
        tenants.create_api_key(conn, "no-such-tenant")
    with pytest.raises(ApiKeyNotFound):
        tenants.revoke_api_key(conn, "000000000000")
