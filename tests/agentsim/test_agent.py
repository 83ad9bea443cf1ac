"""One agent against a real HTTP receiver on a fake clock: outages, refusals, overflow, retries."""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentsim.agent import Agent
from agentsim.backoff import DEFAULT_BACKOFF, Backoff
from agentsim.buffer import DiskBuffer
from agentsim.host import Host
from tests.agentsim.fake_clock import EPOCH, FakeClock
from tests.agentsim.receiver import Received, Receiver, Reply, accept_all, error

# Jitter far below any Retry-After used here, so waits are the server's.
TINY_BACKOFF = Backoff(base_s=0.001, cap_s=0.001)


@asynccontextmanager
async def agent_for(
    receiver: Receiver,
    clock: FakeClock,
    buffer_dir: Path,
    *,
    backoff: Backoff = DEFAULT_BACKOFF,
    max_bytes: int = 2**20,
    compress: bool = False,
) -> AsyncIterator[Agent]:
    async with httpx.AsyncClient(base_url=receiver.base_url, timeout=5) as client:
        yield Agent(
            Host(0, seed=1),
            DiskBuffer(buffer_dir, max_bytes),
            client,
            "test-key",
            random.Random(0),
            backoff,
            compress,
            clock,
        )


def answers(*replies: Reply) -> Callable[[Received], Reply]:
    """Answer requests with these replies in turn, then accept everything."""
    queue = list(replies)
    return lambda request: queue.pop(0) if queue else accept_all(request)


def test_after_an_outage_every_batch_is_delivered_exactly_once(
    receiver: Receiver, clock: FakeClock, tmp_path: Path
) -> None:
    clock.at(30, receiver.stop)  # connections refused from t=30 s ...
    clock.at(200, receiver.start)  # ... until t=200 s

    async def scenario() -> Agent:
        async with agent_for(receiver, clock, tmp_path) as agent:
            await agent.run(10.0, until=400)
            return agent

    agent = asyncio.run(scenario())
    delivered = receiver.delivered()
    assert Counter(r.batch_id for r in delivered).most_common(1)[0][1] == 1
    assert len(delivered) == 40 == len(receiver.received), "one batch per 10 s, no resends"
    assert sum(r.samples for r in delivered) == agent.stats.accepted == agent.stats.collected
    assert agent.stats.retries > 0 and agent.stats.requests > 40
    assert len(agent.buffer) == 0 and agent.stats.dropped == 0
    backlog = []
    for request in delivered:
        assert request.batch is not None
        collected_at = request.batch.metrics[0].timestamp - EPOCH
        assert request.at >= collected_at
        if 30 <= collected_at < 200:
            backlog.append(request.at)
    assert len(backlog) == 17 and min(backlog) >= 200, "collected in the outage, sent after it"
    # Backoff is capped at 60 s: the backlog is gone within a minute of the recovery.
    assert max(backlog) <= 200 + 60
    stamps = [r.batch.metrics[0].timestamp for r in delivered if r.batch is not None]
    assert stamps == sorted(stamps), "oldest first"


@pytest.mark.parametrize(
    ("reply", "min_wait_s"),
    [
        (error(429, "rate_limited", retry_after_s=7), 7.0),
        (error(503, "backlog_full", retry_after_s=12), 12.0),
        (error(503, "bus_unavailable", retry_after_s=1), 1.0),
        (error(500, "internal"), 0.0),
        (error(502, "bad_gateway"), 0.0),
    ],
)
def test_a_retryable_answer_keeps_the_batch_and_waits_at_least_retry_after(
    receiver: Receiver, clock: FakeClock, tmp_path: Path, reply: Reply, min_wait_s: float
) -> None:
    receiver.answer = answers(reply, reply, reply)

    async def scenario() -> Agent:
        async with agent_for(receiver, clock, tmp_path, backoff=TINY_BACKOFF) as agent:
            agent.collect(clock.time())
            while len(agent.buffer):
                await agent.deliver()
                if len(agent.buffer):
                    asked = len(receiver.received)
                    assert agent.retry_at >= clock.monotonic() + min_wait_s
                    clock.advance_to(agent.retry_at - 0.0005)
                    await agent.deliver()
                    assert len(receiver.received) == asked, "nothing sent before the wait ends"
                    clock.advance_to(agent.retry_at)
            return agent

    agent = asyncio.run(scenario())
    statuses = [r.status for r in receiver.received]
    assert statuses == [reply.status] * 3 + [202]
    assert len({r.batch_id for r in receiver.received}) == 1, "every retry reuses the batch id"
    times = [r.at for r in receiver.received]
    assert all(later - earlier >= min_wait_s for earlier, later in itertools.pairwise(times))
    assert (agent.stats.requests, agent.stats.retries) == (4, 3)
    assert agent.stats.accepted == agent.stats.collected and agent.stats.dropped == 0


@pytest.mark.parametrize(
    "reply",
    [
        error(400, "malformed_body"),
        error(401, "unauthorized"),
        error(413, "batch_too_large"),
        error(408, "request_timeout"),
        error(415, "unsupported_media_type"),
        error(422, "unprocessable"),
    ],
)
def test_a_refused_batch_is_dropped_and_never_retried(
    receiver: Receiver,
    clock: FakeClock,
    tmp_path: Path,
    reply: Reply,
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver.answer = lambda request: reply

    async def scenario() -> Agent:
        async with agent_for(receiver, clock, tmp_path) as agent:
            agent.collect(clock.time())
            agent.collect(clock.time() + 10)
            await agent.deliver()  # both refused: a refusal does not stop the drain
            for _ in range(5):
                clock.advance_to(clock.now + 60)
                await agent.deliver()
            return agent

    with caplog.at_level(logging.WARNING, logger="agentsim.agent"):
        agent = asyncio.run(scenario())
    assert len(receiver.received) == 2 and len({r.batch_id for r in receiver.received}) == 2
    assert agent.stats.retries == 0 and len(agent.buffer) == 0
    assert agent.stats.dropped_rejected == agent.stats.collected > 0
    assert agent.stats.accepted == 0
    assert len(caplog.records) == 1, "the same refusal is logged once"
    assert str(reply.status) in caplog.records[0].getMessage()


def rejecting(too_old: int, in_future: int, by_code: bool) -> Callable[[Received], Reply]:
    """202 with some samples rejected; without `by_code`, only the (complete) list tells."""

    def answer(request: Received) -> Reply:
        codes = ["sample_too_old"] * too_old + ["sample_in_future"] * in_future
        listed = [{"index": i, "code": c, "message": c} for i, c in enumerate(codes)]
        body: dict[str, Any] = {"accepted": request.samples - len(codes), "rejected": len(codes)}
        if by_code:
            # The list is truncated; the counts are exact.
            body |= {"rejected_by_code": dict(Counter(codes)), "rejections": listed[:1]}
        else:
            body["rejections"] = listed
        return Reply(202, body)

    return answer


@pytest.mark.parametrize("by_code", [True, False])
def test_too_old_samples_are_counted_as_dropped_not_retried(
    receiver: Receiver, clock: FakeClock, tmp_path: Path, by_code: bool
) -> None:
    receiver.answer = rejecting(too_old=30, in_future=4, by_code=by_code)

    async def scenario() -> Agent:
        async with agent_for(receiver, clock, tmp_path) as agent:
            agent.collect(clock.time())
            await agent.deliver()
            clock.advance_to(120)
            await agent.deliver()
            return agent

    agent = asyncio.run(scenario())
    assert len(receiver.received) == 1 and len(agent.buffer) == 0
    stats = agent.stats
    assert (stats.dropped_too_old, stats.rejected, stats.retries) == (30, 34, 0)
    assert stats.accepted + stats.rejected == stats.collected


def test_an_outage_longer_than_the_buffer_drops_the_oldest_batches(
    receiver: Receiver, clock: FakeClock, tmp_path: Path
) -> None:
    receiver.stop()

    async def scenario() -> tuple[Agent, list[str]]:
        # Room for about four batches (each ~15 kB encoded).
        async with agent_for(receiver, clock, tmp_path, max_bytes=60_000) as agent:
            ids = []
            for _ in range(12):
                ids.append(agent.collect(clock.time()))
                await agent.deliver()
                assert agent.buffer.size_bytes <= 60_000
                clock.advance_to(clock.now + 10)
            receiver.start()
            await agent.flush()
            return agent, ids

    agent, ids = asyncio.run(scenario())
    kept = [r.batch_id for r in receiver.delivered()]
    assert 0 < len(kept) < len(ids) and kept == ids[-len(kept) :], "the newest survive, in order"
    stats = agent.snapshot()
    assert stats.dropped_overflow == stats.collected - stats.accepted > 0
    assert agent.buffer.dropped_batches == len(ids) - len(kept)
    assert stats.buffered == 0


def test_a_restarted_agent_delivers_what_the_previous_one_buffered(
    receiver: Receiver, clock: FakeClock, tmp_path: Path
) -> None:
    receiver.stop()

    async def before_restart() -> list[str]:
        async with agent_for(receiver, clock, tmp_path) as agent:
            ids = [agent.collect(clock.time() + i) for i in range(3)]
            await agent.deliver()
            assert len(agent.buffer) == 3
            return ids

    async def after_restart() -> Agent:
        async with agent_for(receiver, clock, tmp_path) as agent:
            assert agent.buffer.samples > 0
            await agent.deliver()
            return agent

    ids = asyncio.run(before_restart())
    receiver.start()
    agent = asyncio.run(after_restart())
    assert [r.batch_id for r in receiver.delivered()] == ids
    assert agent.stats.accepted > 0 and len(agent.buffer) == 0


def test_requests_carry_the_key_the_content_type_and_the_encoding_of_each_batch(
    receiver: Receiver, clock: FakeClock, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with agent_for(receiver, clock, tmp_path, compress=True) as zipping:
            zipping.collect(clock.time())
        async with agent_for(receiver, clock, tmp_path) as plain:
            plain.collect(clock.time() + 10)
            await plain.deliver()  # the gzip batch from before, then its own

    asyncio.run(scenario())
    first, second = receiver.received
    for request in (first, second):
        assert request.path == "/v1/metrics/ingest"
        assert request.headers["authorization"] == "Bearer test-key"
        assert request.headers["content-type"] == "application/x-protobuf"
        assert request.batch is not None and len(request.batch.metrics) > 100
    assert first.headers.get("content-encoding") == "gzip"
    assert "content-encoding" not in second.headers
