"""voice-ai-detection's rate limit: a token bucket per client address and key presence (opt-in here).

Each request to /api/voice-detection or /api/queue takes one token; a bucket holds `capacity` tokens, starts
full and refills continuously at `per_second`. The peer runs 12 tokens and 0.2 a second; set
VOICELIB_RATE_LIMIT="12,0.2" for the same. The client address is uvicorn's, which honours X-Forwarded-For only
from trusted proxies (FORWARDED_ALLOW_IPS), unlike the peer, whose limit anyone can dodge with that header.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

MAX_BUCKETS = 4096  # above this, buckets that have refilled completely are forgotten


class RateLimiter:
    """Token buckets by key; `take` answers 0.0 when allowed, else the seconds until a token is back."""

    def __init__(self, capacity: float, per_second: float, *, clock: Callable[[], float] = time.monotonic):
        if capacity < 1 or per_second <= 0:
            raise ValueError(f"rate limit needs capacity >= 1 and a refill > 0, got {capacity}, {per_second}; "
                             "write VOICELIB_RATE_LIMIT as 'capacity,tokens_per_second', e.g. 12,0.2")
        self.capacity, self.per_second, self.clock = float(capacity), float(per_second), clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when)
        self._lock = threading.Lock()

    def _level(self, key: str, now: float) -> float:
        tokens, when = self._buckets.get(key, (self.capacity, now))
        return min(self.capacity, tokens + (now - when) * self.per_second)

    def take(self, key: str) -> float:
        """Take one token from `key`'s bucket; 0.0 if there was one, else seconds to wait."""
        with self._lock:
            now = self.clock()
            if len(self._buckets) > MAX_BUCKETS:
                self._buckets = {k: v for k, v in self._buckets.items() if self._level(k, now) < self.capacity}
            tokens = self._level(key, now)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                return (1.0 - tokens) / self.per_second
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0


def parse_rate_limit(text: str | None) -> tuple[float, float] | None:
    """'capacity,per_second' (VOICELIB_RATE_LIMIT) as numbers; None or empty: no limit."""
    if not text or not text.strip():
        return None
    try:
        capacity, per_second = (float(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"VOICELIB_RATE_LIMIT={text!r}: write 'capacity,tokens_per_second', e.g. 12,0.2") from None
    RateLimiter(capacity, per_second)  # checks the values
    return capacity, per_second
