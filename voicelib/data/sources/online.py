"""What every online source shares: timeouts, retries with backoff and jitter, polite pacing, saying 'offline' once."""
from __future__ import annotations

import logging
import random
import threading
import time
from typing import Callable, TypeVar

from voicelib.errors import SourceUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")

_said: set[str] = set()
_said_lock = threading.Lock()


class PartialCollection(SourceUnavailable):
    """A source stopped part-way: `rows` were collected, `remaining` texts were not."""

    def __init__(self, message: str, *, rows: list[dict], remaining: list[str]):
        super().__init__(message)
        self.rows = rows
        self.remaining = remaining


def say_once(key: str, message: str, *, logger: logging.Logger = log) -> bool:
    """Log `message` as a warning the first time `key` is seen in this process; return True if logged."""
    with _said_lock:
        if key in _said:
            return False
        _said.add(key)
    logger.warning(message)
    return True


def forget_said() -> None:
    """Forget which messages were said (tests, or a new run in the same kernel)."""
    with _said_lock:
        _said.clear()


class Pacer:
    """Keep at least `min_interval` seconds between successive requests to one service."""

    def __init__(self, min_interval: float, *, sleep: Callable[[float], None] = time.sleep):
        if min_interval < 0:
            raise ValueError(f"min_interval {min_interval} is negative; use 0 for no pacing")
        self.min_interval = min_interval
        self._sleep = sleep
        self._last = float("-inf")

    def wait(self) -> None:
        """Sleep until the next request is allowed."""
        delay = self._last + self.min_interval - time.monotonic()
        if delay > 0:
            self._sleep(delay)
        self._last = time.monotonic()


def backoff_delays(retries: int, *, base: float, cap: float = 30.0, seed: int = 0) -> list[float]:
    """Exponential backoff with full jitter: retry k waits uniform(0.5, 1) * min(cap, base * 2**k)."""
    rng = random.Random(seed)
    return [min(cap, base * 2**k) * rng.uniform(0.5, 1.0) for k in range(retries)]


def with_retries(call: Callable[[], T], *, what: str, retries: int = 2, backoff: float = 1.0,
                 retry_on: tuple[type[BaseException], ...] = (Exception,), seed: int = 0,
                 sleep: Callable[[float], None] = time.sleep) -> T:
    """Run `call`, retrying `retry_on` errors with backoff; raise SourceUnavailable naming `what` at the end."""
    delays = backoff_delays(retries, base=backoff, seed=seed)
    for attempt in range(retries + 1):
        try:
            return call()
        except retry_on as exc:
            last = exc
            if attempt < retries:
                log.debug("%s failed (%s); retry %d/%d in %.1fs", what, exc, attempt + 1, retries, delays[attempt])
                sleep(delays[attempt])
    reason = f"{type(last).__name__}: {last}".strip()
    raise SourceUnavailable(f"{what}: unreachable after {retries + 1} attempts ({reason[:200]})") from last
