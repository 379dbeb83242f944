"""What every online source shares: timeouts, retries with backoff and jitter, polite pacing, saying 'offline' once."""
from __future__ import annotations

import logging
import os
import random
import threading
import time
from pathlib import Path
from typing import Callable, TypeVar

from voicelib.errors import ModelError, SourceUnavailable

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


class HubMissing(Exception):
    """A file the hub says it does not have (never retried)."""


def hub_file(repo: str, filename: str, *, revision: str = "main", cache_dir: str | Path | None = None,
          retries: int = 2, timeout: float = 30.0, endpoint: str | None = None) -> Path:
    """Download (or reuse from the cache, resuming partial files) one file of a hub repository; its local path."""
    # huggingface_hub is imported only here: detection never needs it, and it costs a second at start-up
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None  # the hub library reads it only at import time

    def call() -> Path:
        try:
            return Path(hf_hub_download(repo, filename, revision=revision, cache_dir=cache_dir, endpoint=endpoint,
                                        etag_timeout=timeout))
        except RemoteEntryNotFoundError:  # the hub answered: this file is not there (not transient)
            raise HubMissing(filename) from None
        except (RepositoryNotFoundError, RevisionNotFoundError) as exc:  # not transient: no retries
            raise ModelError(f"{repo}@{revision}: not on {endpoint or 'the hub'} ({type(exc).__name__}); "
                             "check the model name and revision") from None
        except RuntimeError as exc:  # huggingface_hub 1.16 reuses a client it closed after a connect error
            if "client has been closed" not in str(exc):
                raise
            raise ConnectionError(f"cannot connect to {endpoint or 'huggingface.co'}") from exc

    try:
        return with_retries(call, what=f"download of {repo}/{filename}", retries=retries,
                            retry_on=(OSError, HfHubHTTPError, LocalEntryNotFoundError))
    except SourceUnavailable as exc:
        raise SourceUnavailable(
            f"cannot download {repo}/{filename}: no network; download it where there is one "
            f"(hf download {repo} --local-dir DIR) and pass DIR instead "
            f"({' '.join(str(exc.__cause__ or exc).split())[:120]})") from None
