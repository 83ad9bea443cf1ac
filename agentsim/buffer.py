"""The agent's bounded on-disk buffer: batches wait here until the server takes them.

One file per batch, named by a sequence number so the oldest sorts first, written to
a temporary name and renamed so a crash never leaves half a batch. When the buffer
would exceed its bound the oldest batches are dropped: during a long outage recent
data is worth more than old (and old data would be refused as too old anyway).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_SUFFIX = ".batch"


@dataclass(frozen=True, slots=True)
class BufferedBatch:
    """A batch waiting for delivery: its id (reused on every retry) and encoded body."""

    sequence: int
    batch_id: str
    samples: int
    payload: bytes


class DiskBuffer:
    """Batches in arrival order on disk, at most `max_bytes` of them."""

    def __init__(self, directory: Path, max_bytes: int = 100 * 2**20) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.dropped_batches = 0
        self.dropped_samples = 0
        directory.mkdir(parents=True, exist_ok=True)
        for leftover in directory.glob("*.tmp"):
            leftover.unlink()
        self._files = sorted(directory.glob(f"*{_SUFFIX}"))
        self._sizes = {path: path.stat().st_size for path in self._files}
        self._bytes = sum(self._sizes.values())
        self._samples = sum(self._samples_of(path) for path in self._files)
        self._next = int(self._files[-1].name.split("-", 1)[0]) + 1 if self._files else 0

    @property
    def size_bytes(self) -> int:
        """Bytes the buffered batches take on disk."""
        return self._bytes

    @property
    def samples(self) -> int:
        """Samples waiting in the buffer."""
        return self._samples

    def __len__(self) -> int:
        return len(self._files)

    def push(self, batch_id: str, samples: int, payload: bytes) -> None:
        """Append a batch, dropping the oldest ones if the bound would be exceeded."""
        name = f"{self._next:012d}-{samples}-{batch_id}{_SUFFIX}"
        self._next += 1
        path = self.directory / name
        temporary = path.with_suffix(".tmp")
        temporary.write_bytes(payload)
        os.replace(temporary, path)
        self._files.append(path)
        self._sizes[path] = len(payload)
        self._bytes += len(payload)
        self._samples += samples
        while self._bytes > self.max_bytes and self._files:
            oldest = self._files[0]
            self.dropped_batches += 1
            self.dropped_samples += self._samples_of(oldest)
            self._remove(oldest)

    def oldest(self) -> BufferedBatch | None:
        """The batch that has waited longest, or None when empty."""
        if not self._files:
            return None
        path = self._files[0]
        sequence, samples, rest = path.name.split("-", 2)
        return BufferedBatch(
            int(sequence), rest.removesuffix(_SUFFIX), int(samples), path.read_bytes()
        )

    def remove(self, batch: BufferedBatch) -> None:
        """Forget a delivered (or undeliverable) batch."""
        for path in self._files:
            if int(path.name.split("-", 1)[0]) == batch.sequence:
                self._remove(path)
                return

    def _remove(self, path: Path) -> None:
        self._files.remove(path)
        self._bytes -= self._sizes.pop(path)
        self._samples -= self._samples_of(path)
        path.unlink(missing_ok=True)

    @staticmethod
    def _samples_of(path: Path) -> int:
        return int(path.name.split("-", 2)[1])
