"""Every job, schedule and sensor is in the Definitions, resolves, and loads the way the
Dagster CLI and daemon load it: by module (`vigil dagster …`) and, from the project root,
by pyproject's `[tool.dagster]` (`dagster dev`, `dagster job list`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from dagster_project.definitions import defs

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_every_job_schedule_and_sensor_is_defined() -> None:
    repository = defs.get_repository_def()
    assert {job.name for job in repository.get_all_jobs()} >= {
        "rollup",
        "rollup_repair",
        "retention",
    }
    assert {schedule.name for schedule in repository.schedule_defs} == {
        "rollup_1m_schedule",
        "rollup_1h_schedule",
        "rollup_1d_schedule",
        "retention_schedule",
    }
    assert {sensor.name for sensor in repository.sensor_defs} == {
        "rollup_repair_sensor",
        "job_failure_sensor",
    }
    assert set(defs.resources or {}) == {"postgres", "redis"}


def test_every_job_resolves_with_its_resources() -> None:
    for name in ("rollup", "rollup_repair", "retention"):
        job = defs.resolve_job_def(name)
        assert job.name == name


def test_schedules_and_sensors_start_running() -> None:
    repository = defs.get_repository_def()
    for schedule in repository.schedule_defs:
        assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING, schedule.name
        assert schedule.execution_timezone == "UTC", schedule.name
    for sensor in repository.sensor_defs:
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING, sensor.name


def dagster(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The Dagster CLI run from the project root, on an instance of its own."""
    return subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), *args],
        cwd=PROJECT_ROOT,
        env={**os.environ, "DAGSTER_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_dagster_cli_validates_the_definitions(tmp_path: Path) -> None:
    done = dagster(tmp_path, "definitions", "validate", "-m", "dagster_project.definitions")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_dagster_cli_finds_the_code_location_from_the_project_root(tmp_path: Path) -> None:
    done = dagster(tmp_path, "job", "list")
    assert done.returncode == 0, done.stdout + done.stderr
    listed = {line.removeprefix("Job: ") for line in done.stdout.splitlines()}
    assert listed >= {"rollup", "rollup_repair", "retention"}, done.stdout
