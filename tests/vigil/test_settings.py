"""Settings: VIGIL_* variables and .env, nested sections, clear refusals."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from vigil.settings import LOCAL_POSTGRES_PORT, LOCAL_REDIS_PORT, Settings


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No VIGIL_* variables and a working directory without a .env file."""
    for name in list(os.environ):
        if name.startswith("VIGIL_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_defaults_match_the_local_services(clean_env: Path) -> None:
    settings = Settings()
    assert settings.database_url == f"postgresql://vigil@127.0.0.1:{LOCAL_POSTGRES_PORT}/vigil"
    assert settings.redis_url == f"redis://127.0.0.1:{LOCAL_REDIS_PORT}/0"
    assert settings.services.postgres_port == LOCAL_POSTGRES_PORT


def test_environment_and_nested_sections(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_DATABASE_URL", "postgresql://u:p@db.internal:5432/metrics")
    monkeypatch.setenv("VIGIL_STORAGE__SAMPLES_CHUNK_INTERVAL", "30m")
    monkeypatch.setenv("VIGIL_SERVICES__REDIS_PORT", "7000")
    settings = Settings()
    assert settings.database_url.endswith("/metrics")
    assert settings.storage.samples_chunk_interval == timedelta(minutes=30)
    assert settings.services.redis_port == 7000


def test_dot_env_file_is_read(clean_env: Path) -> None:
    (clean_env / ".env").write_text("VIGIL_REDIS_URL=redis://127.0.0.1:6390/2\n")
    assert Settings().redis_url == "redis://127.0.0.1:6390/2"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("VIGIL_DATABASE_URL", "mysql://x/y", "postgresql://USER"),
        ("VIGIL_DATABASE_URL", "postgresql://127.0.0.1:5432", "postgresql://USER"),
        ("VIGIL_DATABASE_URL", "postgresql://u@127.0.0.1:port/db", "postgresql://USER"),
        ("VIGIL_REDIS_URL", "http://x", "redis://HOST"),
        ("VIGIL_REDIS_URL", "redis://127.0.0.1:99999/0", "redis://HOST"),
        ("VIGIL_STORAGE__SAMPLES_CHUNK_INTERVAL", "10s", "between 1m and 30d"),
        ("VIGIL_STORAGE__SAMPLES_CHUNK_INTERVAL", "soon", "is not a duration"),
    ],
)
def test_bad_values_say_how_to_fix_them(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=message):
        Settings()
