"""A small local supervisor: runs Vigil's processes for `vigil up`, restarting any that die."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# A child that dies sooner than this after starting is restarted only after a pause,
# so a process failing at startup does not spin.
_RESTART_PAUSE_S = 2.0


@dataclass
class Child:
    """One supervised process: `vigil <args>`, its output appended to `log`."""

    name: str
    args: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0

    def start(self) -> None:
        """Start the process (again)."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "vigil", *self.args],
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                start_new_session=True,  # Ctrl-C reaches the supervisor only
            )
        self.started_at = time.monotonic()

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after `timeout_s`."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Supervisor:
    """Starts children in order, restarts those that exit, stops them in reverse order."""

    def __init__(self, children: list[Child], report: Callable[[str], None]) -> None:
        self.children = children
        self._report = report

    def start(self) -> None:
        """Start every child."""
        for child in self.children:
            child.start()

    def check(self) -> None:
        """Restart children that have exited."""
        for child in self.children:
            if child.process is None or child.process.poll() is None:
                continue
            if time.monotonic() - child.started_at < _RESTART_PAUSE_S:
                continue
            child.restarts += 1
            self._report(
                f"{child.name} exited with status {child.process.returncode}; "
                f"restarting (see {child.log})"
            )
            child.start()

    def stop(self) -> None:
        """Stop every child, last started first."""
        for child in reversed(self.children):
            child.stop()
