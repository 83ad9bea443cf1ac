"""Vigil's Dagster instance: dagster.yaml from the settings, storage created once, and
`vigil dagster webserver` serving the definitions on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from tests.live_servers import free_port
from vigil import dagster_instance
from vigil.settings import DagsterSettings, Settings


def test_sqlite_storage_lives_under_the_data_folder(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    env = dagster_instance.environment(settings)
    assert env == {"DAGSTER_HOME": str(tmp_path / "dagster")}
    config = (tmp_path / "dagster" / "dagster.yaml").read_text()
    assert f'base_dir: "{tmp_path}/dagster/storage"' in config
    assert "enabled: false" in config  # no telemetry


def test_postgres_storage_is_named_by_variable_not_written_to_disk(tmp_path: Path) -> None:
    url = "postgresql://dagster:secret@db.internal:5432/dagster"
    settings = Settings(data_dir=tmp_path, dagster=DagsterSettings(storage_url=url))
    config = dagster_instance.instance_config(settings)
    assert "postgres:" in config and "env: VIGIL_DAGSTER_STORAGE_URL" in config
    assert "secret" not in config


def test_a_storage_url_must_be_postgresql() -> None:
    with pytest.raises(ValidationError, match="postgresql://"):
        DagsterSettings(storage_url="mysql://db/dagster")


def test_the_webserver_serves_the_definitions_on_loopback(tmp_path: Path) -> None:
    env = {**os.environ, "VIGIL_DATA_DIR": str(tmp_path)}
    dagster_instance.prepare(Settings(data_dir=tmp_path))
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "vigil", "dagster", "webserver", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                info = httpx.get(f"http://127.0.0.1:{port}/server_info", timeout=2).json()
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline
                time.sleep(0.5)
        assert info["dagster_version"].startswith("1.13.")
        jobs = httpx.post(
            f"http://127.0.0.1:{port}/graphql",
            json={
                "query": "{ repositoriesOrError { ... on RepositoryConnection "
                "{ nodes { jobs { name } } } } }"
            },
            timeout=30,
        ).json()["data"]["repositoriesOrError"]["nodes"][0]["jobs"]
        assert {"rollup", "rollup_repair", "retention"} <= {job["name"] for job in jobs}
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
