"""How commands fail: expected failures (bad settings or options, refused input, an
unreachable server) as one line on stderr starting `vigil: error:`, and exit status 1."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import NoReturn

import psycopg
import typer
from pydantic import ValidationError

from ingest.errors import IngestError
from querylang.errors import QueryError
from storage.database import connect
from storage.durations import parse_duration
from storage.errors import StorageError, first_line
from vigil.services import ServiceError
from vigil.settings import Settings


def fail(message: str) -> NoReturn:
    """Print `vigil: error: <message>` on stderr and exit with status 1."""
    typer.echo(f"vigil: error: {message}", err=True)
    raise typer.Exit(1)


def load_settings() -> Settings:
    """The VIGIL_* settings; a bad one fails naming its variable and how to fix it."""
    try:
        return Settings()
    except ValidationError as exc:
        error = exc.errors()[0]
        variable = "VIGIL_" + "__".join(str(part) for part in error["loc"]).upper()
        fail(f"invalid setting {variable}: {error['msg'].removeprefix('Value error, ')}")


@contextmanager
def expected_failures() -> Iterator[None]:
    """Turn the domain's expected failures into one line on stderr and exit status 1."""
    try:
        yield
    except (StorageError, ServiceError, IngestError, QueryError) as exc:
        fail(str(exc))
    except psycopg.errors.UndefinedTable as exc:
        fail(f"{first_line(exc)}: run `vigil migrate` first")
    except psycopg.Error as exc:
        fail(f"database error: {first_line(exc)}")


@contextmanager
def database(settings: Settings) -> Iterator[psycopg.Connection]:
    """A connection to Vigil's database, its failures expected ones."""
    with expected_failures(), connect(settings.database_url) as conn:
        yield conn


def duration_option(text: str) -> timedelta:
    """An option's duration, e.g. 2h or 1d12h; anything else is a usage error."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
