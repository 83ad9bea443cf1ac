"""A stand-in ingest server on 127.0.0.1: records every request, answers as a test tells it.

It speaks real HTTP on a real socket, so the agent's client, timeouts and connection
errors are exercised for real; `stop()` closes the listening socket, so requests are
refused until `start()` binds the same port again.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cramjam

from ingest.wire import ingest_pb2, remote_pb2


@dataclass(frozen=True)
class Received:
    """One request as the server saw it, decoded, with the status it was answered."""

    path: str
    headers: dict[str, str]
    batch: ingest_pb2.MetricBatch | None
    write: remote_pb2.WriteRequest | None
    status: int
    at: float  # the receiver's `now()` when it arrived

    @property
    def batch_id(self) -> str:
        """The batch id of an agent request ("" for remote write)."""
        return self.batch.batch_id if self.batch is not None else ""

    @property
    def samples(self) -> int:
        """Samples in the request."""
        if self.batch is not None:
            return len(self.batch.metrics)
        assert self.write is not None
        return sum(len(series.samples) for series in self.write.timeseries)


@dataclass(frozen=True)
class Reply:
    """What to answer: status, JSON body (None for an empty one) and extra headers."""

    status: int
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


def accept_all(request: Received) -> Reply:
    """The happy server: 202 with every sample accepted, or 204 for remote write."""
    if request.write is not None:
        return Reply(204)
    return Reply(
        202,
        {"accepted": request.samples, "rejected": 0, "rejected_by_code": {}, "rejections": []},
    )


def error(status: int, code: str, retry_after_s: int | None = None) -> Reply:
    """Vigil's error envelope with this status and code."""
    headers = {} if retry_after_s is None else {"Retry-After": str(retry_after_s)}
    return Reply(status, {"error": {"code": code, "message": code}}, headers)


class Receiver:
    """The stand-in server; `answer` decides each reply, `received` lists every request."""

    def __init__(self, now: Callable[[], float] = lambda: 0.0) -> None:
        self.answer: Callable[[Received], Reply] = accept_all
        self.received: list[Received] = []
        self.now = now
        self._lock = threading.Lock()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port: int = probe.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Listen on the receiver's port (again)."""
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        server.daemon_threads = True
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._server = server
        self._thread.start()

    def stop(self) -> None:
        """Stop listening: connections are refused until `start()`."""
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = self._thread = None

    def delivered(self) -> list[Received]:
        """Requests answered 202 or 204, in arrival order."""
        with self._lock:
            return [r for r in self.received if r.status in (202, 204)]

    def record(self, request: Received) -> None:
        """Keep a request (called from the server's threads)."""
        with self._lock:
            self.received.append(request)


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.0: one request per connection, so a stopped receiver refuses at once.
        protocol_version = "HTTP/1.0"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            encoding = self.headers.get("Content-Encoding", "")
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "snappy":
                body = bytes(cramjam.snappy.decompress_raw(body))
            batch = write = None
            if self.path == "/v1/metrics/ingest":
                batch = ingest_pb2.MetricBatch.FromString(body)
            elif self.path == "/api/v1/write":
                write = remote_pb2.WriteRequest.FromString(body)
            headers = {key.lower(): value for key, value in self.headers.items()}
            request = Received(self.path, headers, batch, write, 0, receiver.now())
            reply = receiver.answer(request)
            receiver.record(Received(self.path, headers, batch, write, reply.status, request.at))
            payload = b"" if reply.body is None else json.dumps(reply.body).encode()
            self.send_response(reply.status)
            for key, value in reply.headers.items():
                self.send_header(key, value)
            if reply.body is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
