"""Ingestion endpoints: Vigil's batched format and Prometheus remote write."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from api.bodies import read_body
from api.dependencies import CallerDep, ServicesDep
from api.responses import ingest_accepted, remote_write_answer
from ingest.decoding import DecodedBatch, decode_ingest, decode_remote_write, decompress
from ingest.errors import BatchTooLarge
from ingest.intake import IntakeResult

router = APIRouter()


@router.post("/v1/metrics/ingest", status_code=202)
async def ingest(request: Request, caller: CallerDep, found: ServicesDep) -> Response:
    """Accept a batch of metrics (JSON or protobuf); 202 once it is durably on the bus."""
    body = await read_body(request, found.max_body_bytes, BatchTooLarge)

    def accept() -> IntakeResult:
        raw = decompress(body, request.headers.get("content-encoding"), found.max_body_bytes)
        batch = decode_ingest(raw, request.headers.get("content-type"), found.label_sets)
        return found.intake.accept(caller.tenant, caller.key_id, batch, _now_us())

    return ingest_accepted(await run_in_threadpool(accept))


@router.post("/api/v1/write")
async def remote_write(request: Request, caller: CallerDep, found: ServicesDep) -> Response:
    """Prometheus remote write 1.0: 204 when stored; 400 (not retried) for rejected samples."""
    body = await read_body(request, found.max_body_bytes, BatchTooLarge)

    def accept() -> IntakeResult:
        encoding = request.headers.get("content-encoding") or "snappy"
        batch: DecodedBatch = decode_remote_write(
            decompress(body, encoding, found.max_body_bytes), found.label_sets
        )
        return found.intake.accept(caller.tenant, caller.key_id, batch, _now_us())

    return remote_write_answer(await run_in_threadpool(accept))


def _now_us() -> int:
    return time.time_ns() // 1000
