"""A real Prometheus (Debian's /usr/bin/prometheus) as the reference PromQL engine in tests.

It runs on a free 127.0.0.1 port with a temporary TSDB, scrapes nothing, and receives
its data by remote write, exactly as an agent would push it.

Loading old data: the 2.42 head refuses a sample older than its newest sample minus
half a block range, 1 h ("out of bounds"), or older than its series' newest ("out of
order"). So samples are sent in time order, in windows of `LOAD_WINDOW_MS`, every
series' samples of a window in one request. The alternative, `storage.tsdb:
out_of_order_time_window: 1d` in the config file, also works with 2.42 (checked: windows
sent newest first all load), but it is an experimental feature with its own head, and
in-order loading exercises the ordinary path that remote write takes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import cramjam
import httpx

from ingest.wire import remote_pb2
from tests.live_servers import free_port
from tests.querylang.comparison_data import Series

PROMETHEUS = Path("/usr/bin/prometheus")
READY_TIMEOUT_S = 30.0
LOAD_WINDOW_MS = 20 * 60_000

# Request parameters in order; a name may repeat (`match[]`).
Params = tuple[tuple[str, str], ...]

# Nothing to scrape and nothing to evaluate: the data comes by remote write.
CONFIG = {"global": {"scrape_interval": "1m", "evaluation_interval": "1m"}}


class PrometheusReference:
    """A running Prometheus: push series to it, ask it PromQL queries."""

    def __init__(self, base_url: str, log: Path) -> None:
        self.base_url = base_url
        self.log = log
        self._http = httpx.Client(base_url=base_url, timeout=30)
        # Each answer is asked for once: the self-check and the comparison share them.
        self._answers: dict[tuple[str, str, Params], httpx.Response] = {}

    def push(self, series: Sequence[Series]) -> int:
        """Remote-write every sample of `series`, oldest window first; returns the count."""
        if not series:
            return 0
        first = min(item.times_ms[0] for item in series if item.times_ms)
        last = max(item.times_ms[-1] for item in series if item.times_ms)
        sent = 0
        for window_start in range(first, last + 1, LOAD_WINDOW_MS):
            request = write_request(series, window_start, window_start + LOAD_WINDOW_MS)
            samples = sum(len(ts.samples) for ts in request.timeseries)
            if samples:
                self.write(request)
                sent += samples
        return sent

    def write(self, request: remote_pb2.WriteRequest) -> None:
        """Send one remote-write request; raise with Prometheus's answer if it is refused."""
        body = bytes(cramjam.snappy.compress_raw(request.SerializeToString()))
        response = self._http.post(
            "/api/v1/write",
            content=body,
            headers={
                "Content-Encoding": "snappy",
                "Content-Type": "application/x-protobuf",
                "X-Prometheus-Remote-Write-Version": "0.1.0",
            },
        )
        if response.status_code // 100 != 2:
            raise RuntimeError(
                f"Prometheus refused a remote write: HTTP {response.status_code} "
                f"{response.text.strip()}\n{log_tail(self.log)}"
            )

    def ask(self, method: str, path: str, params: Params) -> httpx.Response:
        """Ask an API path, answers remembered for the life of this Prometheus."""
        key = (method, path, tuple(params))
        if key not in self._answers:
            self._answers[key] = ask(self._http, method, path, params)
        return self._answers[key]

    def close(self) -> None:
        """Close the HTTP client."""
        self._http.close()


def ask(http: httpx.Client, method: str, path: str, params: Params) -> httpx.Response:
    """GET with a query string or POST with a form body, as Prometheus's clients do."""
    if method == "GET":
        return http.get(path, params=list(params))
    form: dict[str, list[str]] = {}
    for name, value in params:
        form.setdefault(name, []).append(value)
    return http.post(path, data=form)


def write_request(series: Sequence[Series], start_ms: int, end_ms: int) -> remote_pb2.WriteRequest:
    """A remote-write request with each series' samples in [start_ms, end_ms)."""
    request = remote_pb2.WriteRequest()
    for item in series:
        samples = [
            remote_pb2.Sample(value=value, timestamp=t)
            for t, value in zip(item.times_ms, item.values, strict=True)
            if start_ms <= t < end_ms
        ]
        if samples:
            request.timeseries.append(
                remote_pb2.TimeSeries(
                    labels=[remote_pb2.Label(name=k, value=v) for k, v in item.labels],
                    samples=samples,
                )
            )
    return request


def config_text() -> str:
    """The prometheus.yml (JSON is YAML) Prometheus runs with."""
    return json.dumps(CONFIG, indent=2)


@contextmanager
def running_prometheus() -> Iterator[PrometheusReference]:
    """Start Prometheus, wait until it is ready, yield it; stop it and remove its data after."""
    if not PROMETHEUS.exists():
        raise RuntimeError(f"{PROMETHEUS} is missing; `make test` installs it via ops/install")
    root = Path(tempfile.mkdtemp(prefix="vigil-prometheus-"))
    config_file = root / "prometheus.yml"
    config_file.write_text(config_text())
    log = root / "prometheus.log"
    port = free_port()
    try:
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    str(PROMETHEUS),
                    f"--config.file={config_file}",
                    f"--storage.tsdb.path={root / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--web.enable-remote-write-receiver",
                    "--log.level=warn",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            reference = PrometheusReference(f"http://127.0.0.1:{port}", log)
            try:
                wait_until_ready(reference, process)
                yield reference
            finally:
                reference.close()
                stop(process)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def wait_until_ready(reference: PrometheusReference, process: subprocess.Popen[bytes]) -> None:
    """Poll /-/ready until Prometheus answers 200; fail with its log if it exits or hangs."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    with httpx.Client(base_url=reference.base_url, timeout=2) as http:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"Prometheus exited early:\n{log_tail(reference.log)}")
            try:
                if http.get("/-/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"Prometheus not ready in time:\n{log_tail(reference.log)}")
            time.sleep(0.05)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate Prometheus, killing it if it does not stop within 15 s."""
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def log_tail(log: Path, lines: int = 30) -> str:
    """The last lines of Prometheus's log, for failure messages."""
    text = log.read_text(errors="replace") if log.exists() else "(no log)"
    return "\n".join(text.splitlines()[-lines:])
