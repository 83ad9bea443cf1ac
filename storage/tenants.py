"""Tenants and their API keys: keys are shown once and stored only as a hash."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import psycopg

from storage.errors import ApiKeyNotFound, InvalidTenant, TenantExists, TenantNotFound
from storage.queries import query

TENANT_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
DEFAULT_OUT_OF_ORDER_WINDOW = timedelta(hours=2)
_KEY = re.compile(r"^vgl_([a-z0-9]{12})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class Tenant:
    """One tenant: every sample, series and rule belongs to exactly one."""

    id: UUID
    name: str
    out_of_order_window: timedelta
    created_at: datetime


@dataclass(frozen=True)
class TenantSummary:
    """A tenant as listed, with how many of its API keys are active."""

    tenant: Tenant
    active_keys: int


@dataclass(frozen=True)
class IssuedKey:
    """A freshly issued API key: `key` is shown once and never stored."""

    tenant: Tenant
    key_id: str
    key: str


def _hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _new_key() -> tuple[str, str]:
    prefix = secrets.token_hex(6)
    return prefix, f"vgl_{prefix}_{secrets.token_urlsafe(32)}"


def create_tenant(
    conn: psycopg.Connection,
    name: str,
    *,
    out_of_order_window: timedelta = DEFAULT_OUT_OF_ORDER_WINDOW,
) -> IssuedKey:
    """Create a tenant with its first API key."""
    if not TENANT_NAME.fullmatch(name):
        raise InvalidTenant(
            f"invalid tenant name {name!r}: use 1-63 lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    if out_of_order_window <= timedelta(0):
        raise InvalidTenant("the out-of-order window must be positive")
    with conn.transaction():
        row = conn.execute(
            query("insert_tenant"), {"name": name, "out_of_order_window": out_of_order_window}
        ).fetchone()
        if row is None:
            raise TenantExists(f"tenant {name!r} already exists")
        return _issue_key(conn, Tenant(*row))


def create_api_key(conn: psycopg.Connection, tenant_name: str) -> IssuedKey:
    """Issue another API key for an existing tenant (for rotation)."""
    with conn.transaction():
        return _issue_key(conn, get_tenant(conn, tenant_name))


def _issue_key(conn: psycopg.Connection, tenant: Tenant) -> IssuedKey:
    prefix, key = _new_key()
    conn.execute(
        query("insert_api_key"),
        {"prefix": prefix, "tenant_id": tenant.id, "key_hash": _hash(key)},
    )
    return IssuedKey(tenant=tenant, key_id=prefix, key=key)


def get_tenant(conn: psycopg.Connection, name: str) -> Tenant:
    """The tenant with this name."""
    row = conn.execute(query("select_tenant_by_name"), {"name": name}).fetchone()
    if row is None:
        raise TenantNotFound(f"no tenant named {name!r}")
    return Tenant(*row)


def list_tenants(conn: psycopg.Connection) -> list[TenantSummary]:
    """Every tenant, by name."""
    return [
        TenantSummary(Tenant(*row[:4]), active_keys=row[4])
        for row in conn.execute(query("select_tenants"))
    ]


def revoke_api_key(conn: psycopg.Connection, key_id: str) -> None:
    """Revoke a key by its id (the prefix shown when it was issued); revoking twice is harmless."""
    with conn.transaction():
        if conn.execute(query("revoke_api_key"), {"prefix": key_id}).fetchone() is None:
            raise ApiKeyNotFound(f"no API key with id {key_id!r}")


def key_id(key: str) -> str | None:
    """The public id of a well-formed API key (what rate limits and logs name it by)."""
    match = _KEY.fullmatch(key)
    return match[1] if match else None


def authenticate(conn: psycopg.Connection, key: str) -> Tenant | None:
    """The tenant an active API key belongs to, or None for an unknown, revoked or malformed key."""
    match = _KEY.fullmatch(key)
    if not match:
        return None
    row = conn.execute(query("select_api_key"), {"prefix": match[1]}).fetchone()
    if row is None or not hmac.compare_digest(row[0], _hash(key)):
        return None
    return Tenant(*row[1:])
