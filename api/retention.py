"""A tenant's retention overrides: `GET/PUT/DELETE /v1/retention`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from api.dependencies import CallerDep, ServicesDep
from api.responses import OverrideOut, RetentionOut, override_out, retention_out
from storage.retention import parse_retention

router = APIRouter(prefix="/v1/retention", tags=["retention"])

_REJECTED: dict[int | str, dict[str, Any]] = {
    400: {"description": "Unknown tier, bad pattern or unenforceable retention"}
}


class OverrideIn(BaseModel):
    """One override to set: keep the tier's metrics matching `pattern` for `retention`."""

    tier: str = Field(description="raw, 1m, 1h or 1d.")
    pattern: str = Field(description="Metric-name glob: `*` any run, `?` one character.")
    retention: str = Field(description="A duration longer than the tier's default, e.g. 30d.")


@router.get("")
def get_retention(caller: CallerDep, services: ServicesDep) -> RetentionOut:
    """The tiers' default retention and the caller's overrides."""
    return retention_out(services.retention.defaults, services.retention.of(caller.tenant.id))


@router.put("", responses=_REJECTED)
def put_override(caller: CallerDep, services: ServicesDep, body: OverrideIn) -> OverrideOut:
    """Set (or replace) the caller's retention for a tier's metrics matching a pattern."""
    retention = parse_retention(body.retention)
    return override_out(
        services.retention.set(caller.tenant.id, body.tier, body.pattern, retention)
    )


@router.delete("", status_code=204, responses={404: {"description": "No such override"}})
def delete_override(
    caller: CallerDep,
    services: ServicesDep,
    tier: Annotated[str, Query(description="raw, 1m, 1h or 1d.")],
    pattern: Annotated[str, Query(description="The override's pattern, as set.")],
) -> Response:
    """Remove one of the caller's overrides; its kept data expires on the next retention run."""
    services.retention.unset(caller.tenant.id, tier, pattern)
    return Response(status_code=204)
