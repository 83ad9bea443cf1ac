"""API-key authentication for every endpoint, with a short-lived in-process cache."""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass

from storage import tenants
from storage.database import Pool
from storage.tenants import Tenant


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: the tenant its API key belongs to, and the key's public id."""

    tenant: Tenant
    key_id: str


class KeyAuthenticator:
    """Resolves API keys to callers; answers, good or bad, are cached for `ttl_s`.

    Agents send the same key every ten seconds: without the cache each request would
    cost a database round trip. A revoked key therefore keeps working for up to
    `ttl_s` in each API worker.
    """

    def __init__(self, pool: Pool, ttl_s: float = 30.0, max_cached: int = 100_000) -> None:
        self._pool = pool
        self._ttl_s = ttl_s
        self._max_cached = max_cached
        self._cache: dict[bytes, tuple[float, Caller | None]] = {}
        self._lock = threading.Lock()

    def authenticate(self, key: str) -> Caller | None:
        """The caller for a key, or None; raises DatabaseUnavailable on a cache miss."""
        # Cached under a digest, so raw keys never sit in memory longer than a request.
        digest = hashlib.blake2b(key.encode(), digest_size=16).digest()
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        key_id = tenants.key_id(key)
        caller = None
        if key_id is not None:
            with self._pool.connection() as conn:
                tenant = tenants.authenticate(conn, key)
            caller = Caller(tenant, key_id) if tenant is not None else None
        with self._lock:
            if len(self._cache) >= self._max_cached:
                self._cache.clear()
            self._cache[digest] = (now + self._ttl_s, caller)
        return caller
