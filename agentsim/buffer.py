"""The agent's bounded on-disk buffer: batches wait here until the server takes them.

One file per batch, named `<sequence>-<samples>-<batch id>.batch` so the oldest sorts
first and a restarted agent knows each batch's id and size without decoding it. Files
are written under a temporary name and renamed, so a crash never leaves half a batch
under a real name. When the buffer would exceed its bound the oldest batches are
dropped: during a long outage recent data is worth more than old (which the server
would refuse as too old anyway).

No fsync: the buffer survives the agent process dying, not the machine losing power.
An fsync per batch (every host, every interval) costs more than a simulator should pay.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 100 * 2**20

_SUFFIX = ".batch"
_TEMPORARY = ".tmp"
_NAME = re.compile(r"(\d+)-(\d+)-([A-Za-z0-9_.]+)\.batch")
_BATCH_ID = re.compile(r"[A-Za-z0-9_.]{1,128}")


@dataclass(frozen=True, slots=True)
class BufferedBatch:
    """A batch waiting for delivery: its id (reused on every retry) and encoded body."""

    sequence: int
    batch_id: str
    samples: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class _Entry:
    path: Path
    size: int
    samples: int


class DiskBuffer:
    """Batches in arrival order on disk, at most `max_bytes` of payload in all."""

    def __init__(self, directory: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.dropped_batches = 0
        self.dropped_samples = 0
        directory.mkdir(parents=True, exist_ok=True)
        for leftover in directory.glob(f"*{_TEMPORARY}"):
            with contextlib.suppress(OSError):
                leftover.unlink()
        found: list[tuple[int, _Entry]] = []
        for path in directory.glob(f"*{_SUFFIX}"):
            match = _NAME.fullmatch(path.name)
            if match is None:
                log.warning("%s: not a buffered batch, ignored", path)
                continue
            entry = _Entry(path, path.stat().st_size, int(match[2]))
            found.append((int(match[1]), entry))
        # Dicts keep insertion order: the first key is always the oldest batch.
        self._entries = dict(sorted(found, key=lambda item: item[0]))
        self._bytes = sum(entry.size for entry in self._entries.values())
        self._samples = sum(entry.samples for entry in self._entries.values())
        self._next = max(self._entries, default=-1) + 1
        self._trim()

    @property
    def size_bytes(self) -> int:
        """Bytes the buffered batches take on disk."""
        return self._bytes

    @property
    def samples(self) -> int:
        """Samples waiting in the buffer."""
        return self._samples

    def __len__(self) -> int:
        return len(self._entries)

    def push(self, batch_id: str, samples: int, payload: bytes) -> None:
        """Append a batch, dropping the oldest ones if the bound would be exceeded."""
        if not _BATCH_ID.fullmatch(batch_id):
            raise ValueError(f"batch id {batch_id!r} must match {_BATCH_ID.pattern}")
        if len(payload) > self.max_bytes:
            # Emptying the whole buffer would not make room for it; lose only this batch.
            self.dropped_batches += 1
            self.dropped_samples += samples
            return
        sequence = self._next
        self._next += 1
        path = self.directory / f"{sequence:012d}-{samples}-{batch_id}{_SUFFIX}"
        temporary = path.with_suffix(_TEMPORARY)
        try:
            temporary.write_bytes(payload)
            os.replace(temporary, path)
        except OSError as exc:
            # A full or failing disk loses this batch, not the agent.
            log.warning("%s: batch %s not buffered: %s", self.directory, batch_id, exc)
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)
            self.dropped_batches += 1
            self.dropped_samples += samples
            return
        self._entries[sequence] = _Entry(path, len(payload), samples)
        self._bytes += len(payload)
        self._samples += samples
        self._trim()

    def peek_oldest(self) -> BufferedBatch | None:
        """The batch that has waited longest, without removing it; None when empty."""
        while self._entries:
            sequence, entry = next(iter(self._entries.items()))
            match = _NAME.fullmatch(entry.path.name)
            assert match is not None
            try:
                payload = entry.path.read_bytes()
            except FileNotFoundError:
                # Deleted behind our back (an operator clearing the folder): it is gone.
                log.warning("%s: vanished from the buffer", entry.path)
                del self._entries[sequence]
                self._forget(entry)
                continue
            return BufferedBatch(sequence, match[3], entry.samples, payload)
        return None

    def remove(self, batch: BufferedBatch) -> None:
        """Forget a delivered (or undeliverable) batch; a no-op if it is already gone."""
        entry = self._entries.pop(batch.sequence, None)
        if entry is not None:
            self._forget(entry)

    def _trim(self) -> None:
        while self._bytes > self.max_bytes and self._entries:
            oldest = next(iter(self._entries))
            entry = self._entries.pop(oldest)
            self.dropped_batches += 1
            self.dropped_samples += entry.samples
            self._forget(entry)

    def _forget(self, entry: _Entry) -> None:
        self._bytes -= entry.size
        self._samples -= entry.samples
        entry.path.unlink(missing_ok=True)
