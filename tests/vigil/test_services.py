"""A second, throwaway set of local services: created, started, checked, stopped."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator

import psycopg
import pytest
import redis

from storage import tenants
from storage.database import connect
from tests.live_servers import free_port, wait_until
from tests.stored import sample_count
from vigil.services import LocalPostgres, LocalRedis
from vigil.settings import PROJECT_ROOT, ServicesSettings, Settings


@pytest.fixture
def scratch() -> Iterator[Settings]:
    """Settings for services on their own ports and folder (reachable by `postgres`)."""
    pg_port, redis_port = free_port(), free_port()
    data_dir = PROJECT_ROOT / "var" / f"test-services-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        database_url=f"postgresql://vigil@127.0.0.1:{pg_port}/scratch",
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        data_dir=data_dir,
        services=ServicesSettings(postgres_port=pg_port, redis_port=redis_port),
    )
    yield settings
    LocalRedis(settings).down()
    LocalPostgres(settings).down()
    shutil.rmtree(data_dir, ignore_errors=True)


def scratch_env(settings: Settings) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "VIGIL_DATABASE_URL": settings.database_url,
        "VIGIL_REDIS_URL": settings.redis_url,
        "VIGIL_DATA_DIR": str(settings.data_dir),
        "VIGIL_SERVICES__POSTGRES_PORT": str(settings.services.postgres_port),
        "VIGIL_SERVICES__REDIS_PORT": str(settings.services.redis_port),
    }


def vigil(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vigil", *args],
        capture_output=True,
        text=True,
        env=scratch_env(settings),
        timeout=120,
        check=False,
    )


def test_up_status_down_lifecycle(scratch: Settings) -> None:
    up = vigil(scratch, "services", "up")
    assert up.returncode == 0, up.stderr
    assert "postgresql: started" in up.stdout and "redis: started" in up.stdout

    again = vigil(scratch, "services", "up")
    assert "postgresql: running" in again.stdout and "redis: running" in again.stdout

    with psycopg.connect(scratch.database_url) as conn:
        preload = conn.execute("SHOW shared_preload_libraries").fetchone()
        assert preload == ("timescaledb",)
    client = redis.Redis.from_url(scratch.redis_url)
    assert client.ping()
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    assert client.config_get("appendfsync") == {"appendfsync": "everysec"}

    status = vigil(scratch, "services", "status")
    assert status.returncode == 0 and status.stdout.count("running") == 2

    down = vigil(scratch, "services", "down")
    assert "redis: stopped" in down.stdout and "postgresql: stopped" in down.stdout
    status = vigil(scratch, "services", "status")
    assert status.returncode == 1 and status.stdout.count("stopped") == 2


def test_migrate_refuses_a_server_without_timescaledb_preloaded(scratch: Settings) -> None:
    assert vigil(scratch, "services", "up").returncode == 0
    with psycopg.connect(scratch.database_url, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
    # postgresql.auto.conf is read after our config file, so this setting wins.
    postgres = LocalPostgres(scratch)
    postgres.down()
    postgres.up()
    done = vigil(scratch, "migrate")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "vigil: error: TimescaleDB is installed but not preloaded: add shared_preload_libraries"
        " = 'timescaledb' to postgresql.conf and restart PostgreSQL"
    ]


def test_a_stale_pid_file_is_not_trusted(scratch: Settings) -> None:
    redis_service = LocalRedis(scratch)
    redis_service.data_dir.mkdir(parents=True)
    # A crash left the pid file behind, and the pid now belongs to another process.
    (redis_service.data_dir / "redis.pid").write_text(f"{os.getpid()}\n")
    assert not redis_service.status().running
    assert redis_service.down() is False


def test_external_servers_are_left_alone(settings: Settings) -> None:
    external = Settings(
        database_url="postgresql://someone@127.0.0.1:5999/theirs",
        redis_url="redis://127.0.0.1:6999/0",
    )
    for service in (LocalPostgres(external), LocalRedis(external)):
        assert not service.managed
        assert service.up() is False and service.down() is False
        assert service.status().detail.startswith("external server")


def test_up_runs_everything_until_interrupted(scratch: Settings) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "vigil", "up", "--port", str(free_port()), "--hosts", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=scratch_env(scratch),
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line.strip())
        if line.startswith("Press Ctrl-C"):
            break
    (key,) = [line.split()[-1] for line in lines if line.startswith("API key")]
    with connect(scratch.database_url) as conn:
        tenant = tenants.authenticate(conn, key)
        assert tenant is not None and tenant.name == "demo"
    assert LocalRedis(scratch).status().running
    # API, writer and the simulated fleet run: the demo tenant's samples arrive.
    with connect(scratch.database_url) as conn:
        wait_until(lambda: sample_count(conn, tenant.id) > 0, timeout_s=40)

    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 0, process.stderr.read() if process.stderr else ""
    assert not LocalPostgres(scratch).status().running
    assert not LocalRedis(scratch).status().running
    # The demo key survives restarts, so a second `vigil up` shows the same key.
    assert (scratch.data_dir / "demo-api-key").read_text().strip() == key
