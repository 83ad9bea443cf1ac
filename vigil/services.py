"""The project-local PostgreSQL + TimescaleDB cluster and Redis behind `vigil services`.

Each service is managed only when Vigil's URL for it points at the local port it
runs on; a URL aimed elsewhere means an existing server that Vigil leaves alone.
Services are stopped through the pid files their own `up` wrote, never by name.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import redis

from storage.database import ensure_database
from storage.errors import StorageError
from vigil.settings import PROJECT_ROOT, Settings

OPS_DIR = PROJECT_ROOT / "ops"
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class ServiceError(Exception):
    """A local service could not be started, stopped or inspected; one line for a person."""


@dataclass(frozen=True)
class ServiceState:
    """What `vigil services status` says about one service."""

    name: str
    managed: bool
    running: bool
    detail: str


def _is_local(url: str, port: int) -> bool:
    parts = urlsplit(url)
    return parts.hostname in _LOOPBACK and (parts.port or 0) == port


def _run_as_owner(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL program; as root, run it as the `postgres` user it insists on."""
    user = {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        args, capture_output=True, text=True, cwd="/", **user, **kwargs
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _LocalService:
    """What both local services share: a data folder, a pid file, a port, an owner URL."""

    name: str
    url_variable: str
    process_name: str  # what /proc/<pid>/cmdline must contain: pids get reused

    def __init__(self, url: str, port: int, data_dir: Path, pid_file_name: str) -> None:
        self._url = url
        self._port = port
        self.data_dir = data_dir
        self._pid_file = data_dir / pid_file_name
        self.managed = _is_local(url, port)

    def pid(self) -> int | None:
        """The server's process id when it runs from this project's pid file."""
        return self._running_pid()

    def _running_pid(self) -> int | None:
        """The pid on the pid file's first line, if that process is alive."""
        try:
            pid = int(self._pid_file.read_text().split("\n", 1)[0])
        except (FileNotFoundError, ValueError):
            return None
        except OSError as exc:
            raise ServiceError(f"cannot read {self._pid_file}: {exc.strerror}") from exc
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        return pid if self.process_name.encode() in command else None

    def status(self) -> ServiceState:
        """Whether the service is managed here and running."""
        if not self.managed:
            return ServiceState(self.name, False, False, f"external server ({self.url_variable})")
        pid = self._running_pid()
        if pid is None:
            return ServiceState(self.name, True, False, str(self.data_dir))
        return ServiceState(self.name, True, True, f"pid {pid}, 127.0.0.1:{self._port}")


class LocalPostgres(_LocalService):
    """A PostgreSQL cluster under the data folder, with TimescaleDB preloaded."""

    name = "postgresql"
    url_variable = "VIGIL_DATABASE_URL"
    process_name = "postgres"

    def __init__(self, settings: Settings) -> None:
        super().__init__(
            settings.database_url,
            settings.services.postgres_port,
            settings.data_dir / "postgres",
            "postmaster.pid",
        )
        self._bin_dir = settings.services.postgres_bin_dir

    @property
    def bin_dir(self) -> Path:
        """The folder of the PostgreSQL programs this cluster runs with."""
        if self._bin_dir is None:
            self._bin_dir = _postgres_with_timescaledb()
        return self._bin_dir

    def _bin(self, program: str) -> str:
        path = self.bin_dir / program
        if not path.exists():
            raise ServiceError(f"{path} not found: run ops/install")
        return str(path)

    def up(self) -> bool:
        """Start the cluster (creating it first if needed); False if it was already running."""
        if not self.managed or self._running_pid() is not None:
            self._ensure_database()
            return False
        if not (self.data_dir / "PG_VERSION").exists():
            self._init()
        shutil.copyfile(OPS_DIR / "postgresql.conf", self.data_dir / "vigil.conf")
        options = f"-p {self._port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
        log = self.data_dir / "server.log"
        done = _run_as_owner(
            [
                self._bin("pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(log),
                "-w",
                "-t",
                "60",
                "-o",
                options,
                "start",
            ]
        )
        if done.returncode != 0:
            tail = log.read_text().strip().splitlines()[-3:] if log.exists() else []
            raise ServiceError(
                f"PostgreSQL did not start: {' | '.join(tail) or done.stderr.strip()} (log: {log})"
            )
        self._ensure_database()
        return True

    def _init(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)
        if os.geteuid() == 0:
            shutil.chown(self.data_dir, "postgres", "postgres")
            _check_reachable_by_postgres(self.data_dir)
        done = _run_as_owner(
            [
                self._bin("initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "vigil",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-instructions",
            ]
        )
        if done.returncode != 0:
            raise ServiceError(
                f"initdb failed: {' | '.join(done.stderr.strip().splitlines()[-2:])}"
            )
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\ninclude_if_exists = 'vigil.conf'\n")

    def _ensure_database(self) -> None:
        """Create the database named in VIGIL_DATABASE_URL on the local cluster if missing."""
        if self.managed:
            try:
                ensure_database(self._url)
            except StorageError as exc:
                raise ServiceError(str(exc)) from exc

    def down(self) -> bool:
        """Stop the cluster `up` started; False if it was not running."""
        if not self.managed or self._running_pid() is None:
            return False
        done = _run_as_owner(
            [self._bin("pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"]
        )
        if done.returncode != 0:
            raise ServiceError(f"PostgreSQL did not stop: {done.stderr.strip()}")
        return True


def _postgres_with_timescaledb() -> Path:
    """The bin folder of the newest installed PostgreSQL that has TimescaleDB."""
    versions = sorted(
        (int(p.name) for p in Path("/usr/lib/postgresql").glob("*") if p.name.isdigit()),
        reverse=True,
    )
    for version in versions:
        control = Path(f"/usr/share/postgresql/{version}/extension/timescaledb.control")
        if control.exists():
            return Path(f"/usr/lib/postgresql/{version}/bin")
    raise ServiceError(
        "no PostgreSQL with TimescaleDB is installed here: run ops/install "
        "(or set VIGIL_SERVICES__POSTGRES_BIN_DIR)"
    )


def _check_reachable_by_postgres(folder: Path) -> None:
    probe = subprocess.run(
        ["test", "-w", str(folder)], user="postgres", group="postgres", check=False
    )
    if probe.returncode != 0:
        raise ServiceError(
            f"the postgres user cannot reach {folder}: make its parent folders "
            "world-executable, or set VIGIL_DATA_DIR to a folder it can reach"
        )


class LocalRedis(_LocalService):
    """A Redis with an append-only file under the data folder."""

    name = "redis"
    url_variable = "VIGIL_REDIS_URL"
    process_name = "redis-server"

    def __init__(self, settings: Settings) -> None:
        super().__init__(
            settings.redis_url,
            settings.services.redis_port,
            settings.data_dir / "redis",
            "redis.pid",
        )

    def up(self) -> bool:
        """Start Redis; False if it was already running."""
        if not self.managed or self._running_pid() is not None:
            return False
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(server).exists():
            raise ServiceError("redis-server not found: run ops/install")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.data_dir / "redis.log"
        done = subprocess.run(
            [
                server,
                str(OPS_DIR / "redis.conf"),
                "--port",
                str(self._port),
                "--dir",
                str(self.data_dir),
                "--pidfile",
                str(self._pid_file),
                "--logfile",
                str(log),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        client = redis.Redis(host="127.0.0.1", port=self._port, socket_connect_timeout=1)
        deadline = time.monotonic() + 30
        while True:
            try:
                # Loading a large AOF answers BUSY/LOADING until it is done.
                if client.ping():
                    return True
            except redis.RedisError:
                pass
            if done.returncode != 0 or time.monotonic() > deadline:
                tail = log.read_text().strip().splitlines()[-2:] if log.exists() else []
                raise ServiceError(
                    f"Redis did not start: {' | '.join(tail) or done.stderr.strip()} (log: {log})"
                )
            time.sleep(0.1)

    def down(self) -> bool:
        """Stop the Redis `up` started (it flushes its append-only file); False if not running."""
        pid = self._running_pid() if self.managed else None
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while _pid_alive(pid):
            if time.monotonic() > deadline:
                raise ServiceError(f"Redis (pid {pid}) did not stop within 30 s")
            time.sleep(0.1)
        return True


def local_services(settings: Settings) -> list[LocalPostgres | LocalRedis]:
    """The services `vigil services` manages, in start order."""
    return [LocalPostgres(settings), LocalRedis(settings)]
