"""The API and writers run for real inside a test: uvicorn on a free port, writer threads."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn

from api.app import create_app
from ingest.writer import WriterStats
from vigil.settings import Settings
from vigil.wiring import api_services, writer_threads


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def api_server(settings: Settings, port: int | None = None) -> Iterator[str]:
    """Serve the real API app on 127.0.0.1 and yield its base URL."""
    port = port or free_port()
    config = uvicorn.Config(
        create_app(api_services(settings)), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the API did not start")
        time.sleep(0.02)
    try:
        yield base_url
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def writers(settings: Settings, consumers: int = 1) -> Iterator[WriterStats]:
    """Writer threads consuming the settings' bus until the block ends."""
    stop = threading.Event()
    stats = WriterStats()
    threads = writer_threads(settings, consumers, stop, stats)
    for thread in threads:
        thread.start()
    try:
        yield stats
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)


def wait_until(condition: object, timeout_s: float = 20.0, interval_s: float = 0.1) -> None:
    """Poll `condition()` until it is true; fail the test after `timeout_s`."""
    assert callable(condition)
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        time.sleep(interval_s)


def client(base_url: str, key: str | None) -> httpx.Client:
    """An HTTP client that authenticates with `key` as a bearer token."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=base_url, headers=headers, timeout=30)
