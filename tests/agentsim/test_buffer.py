"""The agent's disk buffer: ordered, bounded (oldest dropped first), durable across restarts."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentsim.buffer import DiskBuffer


def drain(buffer: DiskBuffer) -> list[str]:
    ids = []
    while (batch := buffer.peek_oldest()) is not None:
        ids.append(batch.batch_id)
        buffer.remove(batch)
    return ids


def test_batches_come_back_oldest_first_and_survive_a_restart(tmp_path: Path) -> None:
    buffer = DiskBuffer(tmp_path, max_bytes=10_000)
    for i in range(3):
        buffer.push(f"id{i}", samples=10 + i, payload=bytes([i]) * 100)
    reopened = DiskBuffer(tmp_path, max_bytes=10_000)
    assert (len(reopened), reopened.samples, reopened.size_bytes) == (3, 33, 300)
    first = reopened.peek_oldest()
    assert first is not None and (first.batch_id, first.samples) == ("id0", 10)
    assert first.payload == b"\x00" * 100
    assert reopened.peek_oldest() == first, "peeking does not remove"
    reopened.remove(first)
    reopened.remove(first)  # removing twice is harmless
    reopened.push("id3", samples=1, payload=b"x")
    assert drain(reopened) == ["id1", "id2", "id3"]
    assert (reopened.samples, reopened.size_bytes) == (0, 0)
    assert list(tmp_path.iterdir()) == []


def test_the_bound_drops_the_oldest_batches_and_counts_them(tmp_path: Path) -> None:
    buffer = DiskBuffer(tmp_path, max_bytes=1_000)
    for i in range(25):
        buffer.push(f"id{i}", samples=5, payload=b"p" * 100)
        assert buffer.size_bytes <= 1_000
        assert sum(path.stat().st_size for path in tmp_path.iterdir()) == buffer.size_bytes
    assert (buffer.dropped_batches, buffer.dropped_samples) == (15, 75)
    assert drain(buffer) == [f"id{i}" for i in range(15, 25)]


def test_a_batch_larger_than_the_bound_is_dropped_alone(tmp_path: Path) -> None:
    buffer = DiskBuffer(tmp_path, max_bytes=1_000)
    buffer.push("small", samples=1, payload=b"s" * 500)
    buffer.push("huge", samples=9, payload=b"h" * 1_001)
    assert (buffer.dropped_batches, buffer.dropped_samples) == (1, 9)
    assert drain(buffer) == ["small"]


def test_reopening_with_a_smaller_bound_trims_the_oldest(tmp_path: Path) -> None:
    buffer = DiskBuffer(tmp_path, max_bytes=10_000)
    for i in range(10):
        buffer.push(f"id{i}", samples=2, payload=b"p" * 100)
    smaller = DiskBuffer(tmp_path, max_bytes=350)
    assert (smaller.dropped_batches, smaller.dropped_samples, len(smaller)) == (7, 14, 3)
    assert drain(smaller) == ["id7", "id8", "id9"]


def test_half_written_and_foreign_files_are_not_batches(tmp_path: Path) -> None:
    buffer = DiskBuffer(tmp_path)
    buffer.push("complete", samples=1, payload=b"ok")
    (tmp_path / "000000000001-1-torn.tmp").write_bytes(b"half")
    (tmp_path / "notes.batch").write_bytes(b"not ours")
    reopened = DiskBuffer(tmp_path)
    assert len(reopened) == 1 and not list(tmp_path.glob("*.tmp"))
    reopened.push("next", samples=1, payload=b"ok")
    assert drain(reopened) == ["complete", "next"]


@pytest.mark.parametrize("batch_id", ["", "../escape", "a/b", "x" * 129])
def test_a_batch_id_that_is_not_a_safe_file_name_is_refused(tmp_path: Path, batch_id: str) -> None:
    with pytest.raises(ValueError):
        DiskBuffer(tmp_path).push(batch_id, samples=1, payload=b"x")


def test_a_batch_deleted_behind_its_back_is_skipped(tmp_path: Path) -> None:
    buffer = DiskBuffer(tmp_path)
    for i in range(3):
        buffer.push(f"id{i}", samples=4, payload=b"p")
    next(tmp_path.glob("*-id1.batch")).unlink()
    first = buffer.peek_oldest()
    assert first is not None
    buffer.remove(first)
    assert drain(buffer) == ["id2"] and buffer.samples == 0


def test_a_failed_write_drops_that_batch_only(tmp_path: Path) -> None:
    buffer = DiskBuffer(tmp_path)
    buffer.push("kept", samples=2, payload=b"k")
    (tmp_path / "000000000001-3-lost.tmp").mkdir()  # the write will fail (even as root)
    buffer.push("lost", samples=3, payload=b"l")
    assert (buffer.dropped_batches, buffer.dropped_samples) == (1, 3)
    assert drain(buffer) == ["kept"]
