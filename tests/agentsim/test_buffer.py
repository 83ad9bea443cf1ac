"""The agent's disk buffer: ordered, bounded (oldest dropped first), durable across restarts."""

from __future__ import annotations

from pathlib import Path

from agentsim.buffer import DiskBuffer


def test_batches_come_back_oldest_first_and_survive_a_restart(tmp_path: Path) -> None:
    buffer = DiskBuffer(tmp_path, max_bytes=10_000)
    for i in range(3):
        buffer.push(f"id-{i}", samples=10 + i, payload=bytes([i]) * 100)
    reopened = DiskBuffer(tmp_path, max_bytes=10_000)
    assert len(reopened) == 3 and reopened.samples == 33 and reopened.size_bytes == 300
    first = reopened.oldest()
    assert first is not None and (first.batch_id, first.samples) == ("id-0", 10)
    assert first.payload == b"\x00" * 100
    reopened.remove(first)
    reopened.push("id-3", samples=1, payload=b"x")
    ids = []
    while (batch := reopened.oldest()) is not None:
        ids.append(batch.batch_id)
        reopened.remove(batch)
    assert ids == ["id-1", "id-2", "id-3"]
    assert list(tmp_path.iterdir()) == []


def test_the_bound_drops_the_oldest_batches_and_counts_them(tmp_path: Path) -> None:
    buffer = DiskBuffer(tmp_path, max_bytes=1_000)
    for i in range(25):
        buffer.push(f"id-{i}", samples=5, payload=b"p" * 100)
        assert buffer.size_bytes <= 1_000
    assert (buffer.dropped_batches, buffer.dropped_samples) == (15, 75)
    oldest = buffer.oldest()
    assert oldest is not None and oldest.batch_id == "id-15"
    assert sum(path.stat().st_size for path in tmp_path.iterdir()) == buffer.size_bytes


def test_a_half_written_batch_is_discarded_on_restart(tmp_path: Path) -> None:
    buffer = DiskBuffer(tmp_path)
    buffer.push("complete", samples=1, payload=b"ok")
    (tmp_path / "000000000001-1-torn.tmp").write_bytes(b"half")
    reopened = DiskBuffer(tmp_path)
    assert len(reopened) == 1 and not list(tmp_path.glob("*.tmp"))
