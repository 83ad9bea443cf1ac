"""Storage errors: the driver's exceptions translated into named domain failures."""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """The first line of a driver error's message: the part a person needs."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class StorageError(Exception):
    """Root of every error the storage layer raises; its message is one line for a person."""


class DatabaseUnavailable(StorageError):
    """The database could not be reached or refused the connection."""


class SampleWriteRejected(StorageError):
    """The database refused a write for its contents; retrying the same rows cannot succeed."""


class TimescaleDBUnavailable(StorageError):
    """TimescaleDB is missing, not preloaded, or older than Vigil supports."""


class MigrationError(StorageError):
    """A migration could not be applied, or an applied one was changed afterwards."""


class TenantNotFound(StorageError):
    """No tenant by that name or id."""


class TenantExists(StorageError):
    """A tenant by that name already exists."""


class InvalidTenant(StorageError):
    """A tenant name or setting that breaks the rules."""


class ApiKeyNotFound(StorageError):
    """No API key with that id."""


class StatementTimeout(StorageError):
    """A statement ran past its time limit and PostgreSQL cancelled it."""
