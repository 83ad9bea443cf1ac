"""Per-API-key rate limits: two token buckets (requests, samples) kept in Redis.

One Lua script refills and takes from both buckets atomically, on Redis's clock, so
every API worker shares one budget per key and worker clocks cannot disagree. A
refused request takes nothing and learns how long until it would fit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis

log = logging.getLogger(__name__)

_TAKE = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1e6
local request_rate, request_burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local sample_rate, sample_burst = tonumber(ARGV[3]), tonumber(ARGV[4])
local samples = tonumber(ARGV[5])
local state = redis.call('HMGET', KEYS[1], 'requests', 'samples', 'at')
local at = tonumber(state[3]) or now
local elapsed = math.max(0, now - at)
local requests = math.min(request_burst,
  (tonumber(state[1]) or request_burst) + elapsed * request_rate)
local tokens = math.min(sample_burst,
  (tonumber(state[2]) or sample_burst) + elapsed * sample_rate)
local wait = 0
if requests < 1 then wait = (1 - requests) / request_rate end
if tokens < samples then wait = math.max(wait, (samples - tokens) / sample_rate) end
if wait == 0 then
  requests = requests - 1
  tokens = tokens - samples
end
redis.call('HSET', KEYS[1], 'requests', requests, 'samples', tokens, 'at', now)
local full = math.max((request_burst - requests) / request_rate,
  (sample_burst - tokens) / sample_rate)
redis.call('PEXPIRE', KEYS[1], math.ceil(full * 1000) + 1000)
return tostring(wait)
"""


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Sustained rates and bucket sizes, per API key."""

    requests_per_s: float
    request_burst: float
    samples_per_s: float
    sample_burst: float


class RateLimiter:
    """Takes one request and n samples from a key's buckets, or says how long to wait."""

    def __init__(self, client: redis.Redis, limits: RateLimits, prefix: str = "vigil:rate") -> None:
        self.limits = limits
        self._prefix = prefix
        self._take = client.register_script(_TAKE)

    def wait_s(self, key_id: str, samples: int) -> float:
        """0 when the request may go ahead (its tokens are taken), else seconds to wait.

        If Redis cannot be reached the request goes ahead: rate limiting protects the
        platform, and the bus (on the same Redis) refuses the batch anyway.
        """
        limits = self.limits
        try:
            wait = self._take(
                keys=[f"{self._prefix}:{key_id}"],
                args=[
                    limits.requests_per_s,
                    limits.request_burst,
                    limits.samples_per_s,
                    limits.sample_burst,
                    samples,
                ],
            )
        except redis.RedisError as exc:
            log.warning("rate limiter unavailable, not limiting: %s", exc)
            return 0.0
        return float(wait)
