"""The FastAPI application, assembled from services the composition root built."""

from __future__ import annotations

from fastapi import FastAPI

from api import ingest, prometheus, query, retention, sql
from api.dependencies import ApiServices
from api.errors import install_error_handlers


def create_app(services: ApiServices) -> FastAPI:
    """The Vigil HTTP API over the given services."""
    app = FastAPI(title="Vigil", summary="Metrics ingestion and query API", version="0.1.0")
    app.state.services = services
    install_error_handlers(app)
    app.include_router(ingest.router)
    app.include_router(prometheus.router)
    app.include_router(query.router)
    app.include_router(retention.router)
    app.include_router(sql.router)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
