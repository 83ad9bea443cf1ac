"""Request bodies read with a size bound, so an oversized body is refused early."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request


async def read_body(
    request: Request, max_bytes: int, too_large: Callable[[str], Exception]
) -> bytes:
    """The raw body; `too_large(message)` is raised as soon as it passes `max_bytes`
    (by its declared length or while streaming), before it is all read."""
    message = f"the body is larger than {max_bytes} bytes"
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise too_large(message)
    parts = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise too_large(message)
        parts.append(chunk)
    return b"".join(parts)
