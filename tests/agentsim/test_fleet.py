"""A small fleet in real (short) time: staggered agents ride out an outage, stats add up."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from pathlib import Path

import pytest

from agentsim.backoff import Backoff
from agentsim.fleet import FleetStats, run_fleet
from tests.agentsim.receiver import Receiver

FAST_BACKOFF = Backoff(base_s=0.05, cap_s=0.2)


def fleet(receiver: Receiver, tmp_path: Path, lines: list[str], **options: object) -> FleetStats:
    return asyncio.run(
        run_fleet(
            receiver.base_url,
            "fleet-key",
            3,
            interval_s=0.2,
            seed=5,
            buffer_dir=tmp_path,
            backoff=FAST_BACKOFF,
            progress=lines.append,
            progress_every_s=0.1,
            **options,  # type: ignore[arg-type]
        )
    )


def test_a_fleet_rides_out_an_outage_and_delivers_every_batch_once(
    receiver: Receiver, tmp_path: Path
) -> None:
    threading.Timer(0.5, receiver.stop).start()
    threading.Timer(1.3, receiver.start).start()
    lines: list[str] = []
    stats = fleet(receiver, tmp_path, lines, duration_s=2.0)
    totals = stats.totals
    delivered = receiver.delivered()
    assert Counter(r.batch_id for r in delivered).most_common(1)[0][1] == 1
    assert sum(r.samples for r in delivered) == totals.accepted == totals.collected > 0
    assert totals.buffered == 0 and totals.dropped == 0 and totals.retries > 0
    assert totals.sent > totals.accepted, "retries resend samples"
    hosts = Counter(r.batch.metrics[0].labels["host"] for r in delivered if r.batch)
    assert set(hosts) == {"host-00000", "host-00001", "host-00002"}
    assert all(count >= 5 for count in hosts.values()), "about one batch per 0.2 s each"
    assert any(" buffered=0 " not in line for line in lines[:-1]), "the outage was visible"
    assert lines[-1].startswith("final: hosts=3 ") and stats.hosts == 3
    assert f"accepted={totals.accepted} " in lines[-1]
    assert not list(tmp_path.rglob("*.batch"))


def test_what_is_left_at_the_end_stays_on_disk_for_the_next_run(
    receiver: Receiver, tmp_path: Path
) -> None:
    receiver.stop()
    first = fleet(receiver, tmp_path, [], duration_s=0.5, drain_s=0.5).totals
    assert first.accepted == 0 and first.buffered == first.collected > 0
    receiver.start()
    second = fleet(receiver, tmp_path, [], duration_s=0.5).totals
    assert second.accepted == first.collected + second.collected
    assert second.buffered == 0


def test_a_cancelled_fleet_still_reports_its_final_figures(
    receiver: Receiver, tmp_path: Path
) -> None:
    lines: list[str] = []

    async def cancel_after(seconds: float) -> None:
        task = asyncio.create_task(
            run_fleet(
                receiver.base_url,
                "fleet-key",
                2,
                interval_s=0.1,
                buffer_dir=tmp_path,
                progress=lines.append,
            )
        )
        await asyncio.sleep(seconds)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_after(0.5))
    assert len(lines) == 1 and lines[0].startswith("final: hosts=2 ")
    assert receiver.delivered()
