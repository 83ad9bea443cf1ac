"""What routers need, built once by the composition root and reached through the app."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from api.auth import Caller, KeyAuthenticator
from api.errors import Unauthorized
from ingest.decoding import LabelSets
from ingest.intake import Intake
from querylang.service import QueryService
from storage.sql_console import SqlConsole


@dataclass(frozen=True)
class ApiServices:
    """The domain objects the API calls, and its request limits."""

    authenticator: KeyAuthenticator
    intake: Intake
    label_sets: LabelSets
    max_body_bytes: int
    queries: QueryService
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
    if not key:
        raise Unauthorized("missing API key: send `Authorization: Bearer <key>` or `X-API-Key`")
    result = found.authenticator.authenticate(key)
    if result is None:
        raise Unauthorized("invalid or revoked API key")
    return result


CallerDep = Annotated[Caller, Depends(caller)]
