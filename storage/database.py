"""Connections to PostgreSQL, with driver failures translated into storage errors."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import psycopg

from storage.errors import DatabaseUnavailable


def redact(url: str) -> str:
    """The URL without its password, fit for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def connect(url: str) -> psycopg.Connection:
    """Open an autocommit connection (transactions are explicit), or raise DatabaseUnavailable."""
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnavailable(
            f"cannot connect to {redact(url)}: {reason} "
            "(start the local services with `vigil services up`, or set VIGIL_DATABASE_URL)"
        ) from exc
