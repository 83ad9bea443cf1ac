"""Ingestion endpoints: Vigil's batched format and Prometheus remote write."""

from __future__ import annotations

import time
from collections import Counter

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.bodies import read_body
from api.dependencies import CallerDep, ServicesDep
from ingest.decoding import DecodedBatch, decode_ingest, decode_remote_write, decompress
from ingest.errors import BatchTooLarge
from ingest.intake import IntakeResult
from ingest.validation import REJECTION_CODES

router = APIRouter()

# A 202 lists at most this many rejections; its counts are always complete.
MAX_LISTED_REJECTIONS = 100


@router.post("/v1/metrics/ingest", status_code=202)
async def ingest(request: Request, caller: CallerDep, found: ServicesDep) -> JSONResponse:
    """Accept a batch of metrics (JSON or protobuf); 202 once it is durably on the bus."""
    body = await read_body(request, found.max_body_bytes, BatchTooLarge)

    def accept() -> IntakeResult:
        raw = decompress(body, request.headers.get("content-encoding"), found.max_body_bytes)
        batch = decode_ingest(raw, request.headers.get("content-type"), found.label_sets)
        return found.intake.accept(caller.tenant, caller.key_id, batch, _now_us())

    result = await run_in_threadpool(accept)
    return JSONResponse(
        {
            "accepted": result.accepted,
            "rejected": len(result.rejections),
            "rejected_by_code": _counts_by_code(result),
            "rejections": [
                {"index": r.index, "code": r.code, "message": REJECTION_CODES[r.code]}
                for r in result.rejections[:MAX_LISTED_REJECTIONS]
            ],
        },
        status_code=202,
    )


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

    result = await run_in_threadpool(accept)
    if not result.rejections:
        return Response(status_code=204)
    # The valid samples are stored; Prometheus must not resend the rest.
    summary = ", ".join(f"{count} {code}" for code, count in _counts_by_code(result).items())
    return JSONResponse(
        {
            "error": {
                "code": "samples_rejected",
                "message": f"accepted {result.accepted} samples, rejected {summary}",
            }
        },
        status_code=400,
    )


def _counts_by_code(result: IntakeResult) -> dict[str, int]:
    """How many samples were rejected with each code, codes sorted."""
    return dict(sorted(Counter(rejection.code for rejection in result.rejections).items()))


def _now_us() -> int:
    return time.time_ns() // 1000
