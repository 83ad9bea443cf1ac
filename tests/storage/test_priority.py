"""Query work runs at lowered CPU priority: its threads and its PostgreSQL backends."""

from __future__ import annotations

import os
import threading

from storage.database import Pool
from storage.priority import lower_thread_priority


def test_only_the_calling_thread_is_lowered_and_only_once() -> None:
    seen: dict[str, int] = {}

    def work() -> None:
        lower_thread_priority(7)
        lower_thread_priority(7)  # a second call does not lower it further
        seen["worker"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen["worker"] == before + 7
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before


def test_pool_backends_run_at_the_configured_niceness(database_url: str) -> None:
    pool = Pool(database_url, max_size=1, nice=5)
    try:
        with pool.connection() as conn:
            backend = conn.info.backend_pid
            niceness = os.getpriority(os.PRIO_PROCESS, backend)
    finally:
        pool.close()
    # Lowering another user's process needs root, which `make test` runs as here.
    assert niceness == (5 if os.geteuid() == 0 else 0)
