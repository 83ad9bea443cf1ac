"""End-to-end ingestion throughput: agentsim load → API → bus → writer → TimescaleDB.

Everything runs locally as separate processes: `vigil api`, `vigil writer`, the load
generator (`vigil agentsim --load`), PostgreSQL and Redis. For each batch shape the
load runs for warm-up + duration seconds over `--series` distinct series; the figure
is samples *committed to the database* per second during the measured window (read
from the write ledger), not samples accepted by the API. Per-process CPU (cores used
over the window) and peak RSS are sampled every second. In the same run, the raw
binary COPY ceiling is measured as in bench/write_path.py (1M samples per COPY,
median of 3) for the ratio. The last stdout line is one JSON object.

Usage: python bench/ingest.py [--duration 60] [--warmup 10] [--series 100000]
                              [--shapes agent,remote_write] [--api-workers 1]
                              [--consumers 2] [--concurrency 8] [--profile DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil
import psycopg
import redis

from storage import tenants
from storage.copy_binary import encode_samples
from storage.database import connect
from vigil.services import local_services
from vigil.settings import PROJECT_ROOT, Settings

sys.path.insert(0, str(Path(__file__).parent))
from write_path import copy_ceiling, fresh_database, timed

CEILING_SAMPLES = 1_000_000


def measure_ceiling(url: str, rounds: int = 3) -> float:
    """Samples/s of one plain binary COPY into a twin of samples_raw (median of rounds)."""
    rng = np.random.default_rng(1)
    rates = []
    with connect(url) as conn:
        for round_number in range(rounds):
            times = (
                1_790_000_000_000_000
                + round_number * 10**12
                + np.arange(CEILING_SAMPLES, dtype=np.int64) % 100 * 10_000_000
            )
            ids = np.arange(CEILING_SAMPLES, dtype=np.int64) // 100
            payload = encode_samples(times, ids, rng.standard_normal(CEILING_SAMPLES))
            seconds = timed(conn, lambda payload=payload: copy_ceiling(conn, payload))
            rates.append(CEILING_SAMPLES / seconds)
    return statistics.median(rates)


@dataclass
class ProcessGroup:
    """A named set of processes (a root and its descendants) whose usage is summed."""

    name: str
    roots: list[psutil.Process]
    cpu_start: float = 0.0
    cpu_end: float = 0.0
    peak_rss: int = 0
    seen: dict[int, float] = field(default_factory=dict)

    def processes(self) -> list[psutil.Process]:
        found = []
        for root in self.roots:
            try:
                found.append(root)
                found.extend(root.children(recursive=True))
            except psutil.NoSuchProcess:
                continue
        return found

    def cpu_seconds(self) -> float:
        """CPU time of every process ever seen in the group (the dead keep their last)."""
        for process in self.processes():
            try:
                times = process.cpu_times()
                self.seen[process.pid] = times.user + times.system
            except psutil.NoSuchProcess:
                continue
        return sum(self.seen.values())

    def sample_rss(self) -> None:
        total = 0
        for process in self.processes():
            try:
                total += process.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        self.peak_rss = max(self.peak_rss, total)


def committed(conn: psycopg.Connection, tenant_id: uuid.UUID) -> int:
    row = conn.execute(
        "SELECT coalesce(sum(samples), 0) FROM vigil.write_ledger WHERE tenant_id = %s",
        (tenant_id,),
    ).fetchone()
    return int(row[0]) if row else 0


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "vigil", *args],
        env={**os.environ, **env},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=PROJECT_ROOT,
    )


def wait_for_api(port: int, timeout_s: float = 30) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError("the API did not come up")


def server_groups(settings: Settings) -> list[ProcessGroup]:
    """PostgreSQL (postmaster and backends) and Redis of the local services."""
    groups = []
    for service in local_services(settings):
        pid = service.pid()
        if pid is not None:
            groups.append(ProcessGroup(service.name, [psutil.Process(pid)]))
    return groups


def run_shape(
    shape: str, args: argparse.Namespace, settings: Settings, url: str, out: Path
) -> dict[str, object]:
    with connect(url) as conn:
        issued = tenants.create_tenant(conn, f"bench-{shape.replace('_', '-')}")
    prefix = f"bench:{uuid.uuid4().hex[:8]}"
    env = {
        "VIGIL_DATABASE_URL": url,
        "VIGIL_BUS__STREAM_PREFIX": prefix,
        "VIGIL_INGEST__REQUESTS_PER_S": "1000000",
        "VIGIL_INGEST__REQUEST_BURST": "1000000",
        "VIGIL_INGEST__SAMPLES_PER_S": "100000000",
        "VIGIL_INGEST__SAMPLE_BURST": "100000000",
        "VIGIL_API_KEY": issued.key,
    }
    port = 18000 + os.getpid() % 1000
    api = spawn(
        ["api", "--port", str(port), "--workers", str(args.api_workers)],
        env,
        out / f"{shape}-api.log",
    )
    writer = spawn(
        ["writer", "--consumers", str(args.consumers), "--report-every", "5"],
        env,
        out / f"{shape}-writer.log",
    )
    wait_for_api(port)
    total_s = args.warmup + args.duration
    load = spawn(
        [
            "agentsim",
            "--load",
            "--url",
            f"http://127.0.0.1:{port}",
            "--shape",
            shape,
            "--series",
            str(args.series),
            "--concurrency",
            str(args.concurrency),
            "--duration",
            f"{round(total_s)}s",
        ],
        env,
        out / f"{shape}-load.log",
    )
    groups = [
        ProcessGroup("api", [psutil.Process(api.pid)]),
        ProcessGroup("writer", [psutil.Process(writer.pid)]),
        ProcessGroup("loadgen", [psutil.Process(load.pid)]),
        *server_groups(settings),
    ]
    stop = threading.Event()

    def watch_memory() -> None:
        while not stop.wait(1.0):
            for group in groups:
                group.sample_rss()

    watcher = threading.Thread(target=watch_memory, daemon=True)
    watcher.start()
    profiler = None
    with connect(url) as conn:
        time.sleep(args.warmup)
        start_count, start_time = committed(conn, issued.tenant.id), time.monotonic()
        for group in groups:
            group.cpu_start = group.cpu_seconds()
        if args.profile:
            profiler = [
                subprocess.Popen(
                    [
                        str(Path(sys.executable).parent / "py-spy"),
                        "record",
                        "-p",
                        str(p.pid),
                        "-d",
                        "20",
                        "-f",
                        "raw",
                        "-o",
                        str(Path(args.profile) / f"{shape}-{n}.txt"),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for n, p in (("api", api), ("writer", writer))
            ]
        time.sleep(args.duration)
        end_count, end_time = committed(conn, issued.tenant.id), time.monotonic()
        for group in groups:
            group.cpu_end = group.cpu_seconds()
        load.wait(60)
        accepted = json.loads((out / f"{shape}-load.log").read_text().strip().splitlines()[-1])
        drain_began = time.monotonic()
        while committed(conn, issued.tenant.id) < accepted["samples_accepted"]:
            if time.monotonic() - drain_began > 300:
                break
            time.sleep(0.5)
        drain_s = time.monotonic() - drain_began
        final = committed(conn, issued.tenant.id)
    stop.set()
    for process in (api, writer):
        process.terminate()
        process.wait(30)
    for spy in profiler or []:
        spy.wait(30)
    redis.Redis.from_url(settings.redis_url).delete(
        *[f"{prefix}:{p}" for p in range(settings.bus.partitions)]
    )
    window = end_time - start_time
    return {
        "shape": shape,
        "samples_per_s": round((end_count - start_count) / window),
        "accepted_per_s_by_api": accepted["accepted_per_s"],
        "http_statuses": accepted["statuses"],
        "samples_accepted": accepted["samples_accepted"],
        "samples_committed": final,
        "drain_after_load_s": round(drain_s, 1),
        "cpu_cores": {g.name: round((g.cpu_end - g.cpu_start) / window, 2) for g in groups},
        "peak_rss_mb": {g.name: round(g.peak_rss / 2**20) for g in groups},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--warmup", type=float, default=10)
    parser.add_argument("--series", type=int, default=100_000)
    parser.add_argument("--shapes", default="agent,remote_write")
    parser.add_argument("--api-workers", type=int, default=1)
    parser.add_argument("--consumers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--profile", help="folder for py-spy raw profiles of API and writer")
    args = parser.parse_args()
    settings = Settings()
    for service in local_services(settings):
        service.up()
    url = fresh_database(settings)
    out = settings.data_dir / "bench"
    out.mkdir(parents=True, exist_ok=True)
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    ceiling = measure_ceiling(url)
    print(f"raw binary COPY ceiling: {ceiling:,.0f} samples/s")
    results = []
    for shape in args.shapes.split(","):
        result = run_shape(shape, args, settings, url, out)
        results.append(result)
        print(
            f"{shape}: {result['samples_per_s']:,} samples/s committed "
            f"({result['samples_per_s'] / ceiling:.0%} of ceiling); "
            f"cpu cores {result['cpu_cores']}; peak RSS MB {result['peak_rss_mb']}; "
            f"drain after load {result['drain_after_load_s']} s"
        )
    best = max(results, key=lambda r: int(r["samples_per_s"]))  # type: ignore[call-overload]
    print(
        json.dumps(
            {
                "samples_per_s": best["samples_per_s"],
                "best_shape": best["shape"],
                "copy_ceiling_samples_per_s": round(ceiling),
                "ratio": round(int(best["samples_per_s"]) / ceiling, 3),  # type: ignore[call-overload]
                "peak_rss_mb": best["peak_rss_mb"],
                "shapes": results,
            }
        )
    )


if __name__ == "__main__":
    main()
