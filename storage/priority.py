"""CPU priority for read work, so queries yield the cores to ingestion.

On one machine, PostgreSQL backends and API threads serving queries compete with
the writer and the ingest API for the same cores; Linux niceness is the knob that
makes the scheduler prefer ingestion. Lowering priority needs no privilege for
our own threads, and root (or the server's own user) for a PostgreSQL backend;
without the right, queries simply run at normal priority.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading

import psycopg

log = logging.getLogger(__name__)

_lowered = threading.local()


def lower_thread_priority(nice: int) -> None:
    """Make the calling thread (only it: Linux schedules threads) `nice` steps
    less favoured, once per thread."""
    if nice <= 0 or getattr(_lowered, "done", False):
        return
    _lowered.done = True
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except OSError as exc:
        log.info("cannot lower the query thread's priority: %s", exc)


def lower_backend_priority(conn: psycopg.Connection, nice: int) -> None:
    """Make the connection's PostgreSQL backend `nice` steps less favoured, when the
    server runs on this machine (its backend pid names a local process)."""
    if nice <= 0 or not _is_local(conn.info.host):
        return
    try:
        os.setpriority(os.PRIO_PROCESS, conn.info.backend_pid, nice)
    except OSError as exc:
        log.info("cannot lower the query backend's priority: %s", exc)


def _is_local(host: str) -> bool:
    if host.startswith("/") or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
