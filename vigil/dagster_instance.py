"""Vigil's Dagster instance: DAGSTER_HOME under the data folder, its dagster.yaml written
from Vigil's settings, and the commands that run the Dagster webserver and daemon."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

from vigil.services import ServiceError
from vigil.settings import Settings

DEFINITIONS_MODULE = "dagster_project.definitions"

# dagster.yaml names this variable rather than holding the URL, so no password is
# written to disk; `environment` sets it for the Dagster processes.
_STORAGE_URL_VARIABLE = "VIGIL_DAGSTER_STORAGE_URL"


def dagster_home(settings: Settings) -> Path:
    """DAGSTER_HOME: the instance's configuration and, by default, its SQLite storage."""
    return (settings.data_dir / "dagster").resolve()


def instance_config(settings: Settings) -> str:
    """The text of dagster.yaml: SQLite storage in DAGSTER_HOME unless a PostgreSQL URL
    is set; no telemetry; at most four runs at once."""
    home = dagster_home(settings)
    if settings.dagster.storage_url is None:
        storage = f"  sqlite:\n    base_dir: {json.dumps(str(home / 'storage'))}\n"
    else:
        storage = f"  postgres:\n    postgres_url:\n      env: {_STORAGE_URL_VARIABLE}\n"
    return (
        "# Written by `vigil dagster` from Vigil's settings at every start: edit those.\n"
        f"storage:\n{storage}"
        "run_queue:\n  max_concurrent_runs: 4\n"
        "telemetry:\n  enabled: false\n"
    )


def environment(settings: Settings) -> dict[str, str]:
    """Write DAGSTER_HOME's dagster.yaml; the variables the Dagster processes need."""
    storage_url = settings.dagster.storage_url
    if storage_url is not None and importlib.util.find_spec("dagster_postgres") is None:
        raise ServiceError(
            "VIGIL_DAGSTER__STORAGE_URL needs the dagster-postgres package of the installed "
            "dagster's release (pip install dagster-postgres), or unset it for SQLite storage"
        )
    home = dagster_home(settings)
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(instance_config(settings))
    env = {"DAGSTER_HOME": str(home)}
    if storage_url is not None:
        env[_STORAGE_URL_VARIABLE] = storage_url
    return env


def prepare(settings: Settings) -> None:
    """Write dagster.yaml and create or upgrade the instance's storage: once, before the
    webserver and daemon start (both would create a new SQLite storage at once and
    collide), and needed after every Dagster upgrade anyway."""
    done = subprocess.run(
        [_program("dagster"), "instance", "migrate"],
        env={**os.environ, **environment(settings)},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
        raise ServiceError(f"dagster instance migrate failed: {lines[-1]}")


def _program(name: str) -> str:
    """A Dagster command installed beside this interpreter (the virtualenv's bin)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise ServiceError(f"{path} is missing: run ops/install to install Dagster")
    return str(path)


def webserver_command(port: int) -> list[str]:
    """The Dagster UI on 127.0.0.1:`port`, serving Vigil's definitions."""
    return [
        _program("dagster-webserver"),
        *("--host", "127.0.0.1", "--port", str(port), "-m", DEFINITIONS_MODULE),
    ]


def daemon_command() -> list[str]:
    """The Dagster daemon: runs schedules, sensors and the run queue."""
    return [_program("dagster-daemon"), "run", "-m", DEFINITIONS_MODULE]
