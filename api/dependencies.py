"""What routers need, built once by the composition root and reached through the app."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from api.auth import Caller, KeyAuthenticator
from api.errors import Unauthorized
from ingest.decoding import LabelSets
from ingest.intake import Intake
from querylang.service import QueryService
from storage.retention import RetentionOverrides
from storage.sql_console import SqlConsole


@dataclass(frozen=True)
class ApiServices:
    """The domain objects the API calls, and its request limits."""

    authenticator: KeyAuthenticator
    intake: Intake
    label_sets: LabelSets
    max_body_bytes: int
    queries: QueryService
    retention: RetentionOverrides
    sql_console: SqlConsole


def services(request: Request) -> ApiServices:
    """The app's services."""
    found: ApiServices = request.app.state.services
    return found


ServicesDep = Annotated[ApiServices, Depends(services)]


def caller(request: Request, found: ServicesDep) -> Caller:
    """The authenticated caller: `Authorization: Bearer <key>` or `X-API-Key: <key>`."""
    key = request.headers.get("x-api-key")
    authorization = request.headers.get("authorization")
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            key = credentials.strip()
        elif scheme.lower() == "basic" and credentials.strip():
            key = _basic_password(credentials.strip()) or key
    if not key:
        raise Unauthorized(
            "missing API key: send `Authorization: Bearer <key>`, `X-API-Key`, "
            "or basic auth with the key as password"
        )
    result = found.authenticator.authenticate(key)
    if result is None:
        raise Unauthorized("invalid or revoked API key")
    return result


def _basic_password(credentials: str) -> str | None:
    """The password of HTTP basic credentials: clients that only speak basic auth
    (promtool, some Grafana set-ups) send the API key there, with any user name."""
    try:
        decoded = base64.b64decode(credentials, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    _, separator, password = decoded.partition(":")
    return password if separator and password else None


CallerDep = Annotated[Caller, Depends(caller)]
