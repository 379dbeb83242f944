"""The service's models: one loaded detector per language (reloadable), its API keys and settings, the worker pool."""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from fastapi import HTTPException

from voicelib.audio import decode
from voicelib.audio.decode import SUPPORTED_EXTENSIONS
from voicelib.errors import AudioError, AudioTooLong, ModelError
from voicelib.languages import LANGUAGE_NAMES, language_name
from voicelib.model import store
from voicelib.scoring.load import load_detector

log = logging.getLogger(__name__)


PRESET_CHUNKS = (3.0, 5.0)  # chunk lengths run by onnxruntime sessions exported at load; others run in torch


RETRY_AFTER_S = 5  # seconds a refused client is told to wait (Retry-After on 503)


AUDIO_FORMATS = ("wav", "flac", "mp3", "ogg", "oga", "opus", "webm", "m4a", "mp4", "aac", "wma")


@dataclass(frozen=True)
class ServeConfig:
    """Settings of one server: where the models are, who may call it and how much it accepts."""

    models_root: str = "models"
    api_keys: tuple[str, ...] = ()  # empty: no key needed (a warning is logged)
    max_body_bytes: int = 64 * 2**20  # request bodies above this get 413
    max_duration: float = 1800.0  # seconds of audio per request; longer gets 413
    workers: int = 2  # scoring threads
    queue_limit: int = 8  # requests allowed to wait for a thread; beyond that 503
    backend: str = "auto"
    device: str = "cpu"
    faik_auth: str = "none"  # "none": /audio/analyze-audio answers without a key, as fAIk-Backend does; "key"
    cors_origins: tuple[str, ...] = ()  # browser origins allowed to call /api/* (VOICELIB_CORS_ORIGINS)
    rate_limit: tuple[float, float] | None = None  # (tokens, refill a second) per client on /api/*; None: off

    def __post_init__(self) -> None:
        if self.faik_auth not in ("none", "key"):
            raise ValueError(f"faik_auth must be 'none' or 'key', got {self.faik_auth!r} (VOICELIB_FAIK_AUTH)")


def read_api_keys(*, env: str | None = None, key_file: str | os.PathLike | None = None) -> tuple[str, ...]:
    """Keys from a comma-separated string (VOICELIB_API_KEYS) and/or a file with one key a line (# comments)."""
    keys = [k.strip() for k in (env or "").split(",")]
    if key_file is not None:
        path = Path(key_file)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: API key file not found; write one key per line or drop --api-key-file")
        keys += [line.strip() for line in path.read_text().splitlines() if not line.strip().startswith("#")]
    return tuple(dict.fromkeys(k for k in keys if k))


def key_ok(given: str | None, keys: tuple[str, ...]) -> bool:
    """Constant-time check of a presented key against every configured key."""
    if not keys:
        return True
    presented, ok = (given or "").encode(), False
    for key in keys:
        ok |= hmac.compare_digest(presented, key.encode())
    return ok


@dataclass(frozen=True)
class Loaded:
    """One language's detector, loaded completely before anyone can see it."""

    language: str
    version: str
    detector: Any
    torch_detector: Any  # the same network run in torch, for chunk lengths without an onnx session
    loaded_at: str

    def for_chunk(self, chunk_duration: float):
        """The detector to use for windows of `chunk_duration` seconds."""
        return self.detector if chunk_duration in PRESET_CHUNKS else self.torch_detector


def load_language(language: str, config: ServeConfig) -> Loaded:
    """Load the current model of `language` and warm it up on the preset chunk lengths; ModelError if unusable."""
    import numpy as np


    model_dir = store.current(language, root=config.models_root)
    det = load_detector(model_dir, device=config.device, backend=config.backend, max_duration=config.max_duration)
    warm = np.random.default_rng(0).standard_normal(det.sample_rate * 6).astype(np.float32) * 0.1
    for chunk in PRESET_CHUNKS:  # exports the onnx sessions now, not during a request
        det.score_array(warm, det.sample_rate, chunk_duration=chunk)
    torch_det = det if det.backend == "torch" else load_detector(
        model_dir, device=config.device, backend="torch", max_duration=config.max_duration)
    return Loaded(language, model_dir.name, det, torch_det, time.strftime("%Y-%m-%dT%H:%M:%S"))


@dataclass
class Models:
    """The loaded detectors by language; `reload` builds a new mapping and swaps it in one assignment."""

    config: ServeConfig
    by_language: dict[str, Loaded] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def reload(self) -> dict[str, Any]:
        """Pick up newly promoted models; a model that fails to load keeps the previous one of its language."""

        with self._lock:
            old, new, errors = self.by_language, {}, {}
            for language in LANGUAGE_NAMES:
                try:
                    version = store.current(language, root=self.config.models_root).name
                except ModelError:
                    continue  # no model promoted for this language
                if language in old and old[language].version == version:
                    new[language] = old[language]
                    continue
                try:
                    new[language] = load_language(language, self.config)
                    log.info("%s: loaded model %s", language, version)
                except (ModelError, ValueError, OSError) as exc:
                    errors[language] = " ".join(str(exc).split())[:300]
                    log.error("%s: model %s not loaded: %s", language, version, errors[language])
                    if language in old:
                        new[language] = old[language]
            self.by_language, self.errors = new, errors  # readers see the old or the new mapping, never a mix
        return {"languages": {lg: m.version for lg, m in new.items()}, "errors": errors}

    def pick(self, language: str | None) -> Loaded:
        """The model for a language name or code (None: the first loaded); HTTP errors when there is none."""
        current = self.by_language
        if not current:
            raise HTTPException(503, "no model is loaded; train one, promote it in the store, then POST /admin/reload")
        if language is None:
            return next(iter(current.values()))
        try:
            name = language_name(language)
        except ValueError:
            raise HTTPException(422, f"unknown language {language!r}; use one of {', '.join(LANGUAGE_NAMES)}") from None
        if name not in current:
            raise HTTPException(422, f"no model for language {name!r} on this server; loaded: {', '.join(current)}")
        return current[name]


class Slot:
    """One admitted request: released when its work ends, or when it leaves before any work started."""

    def __init__(self, pool: "Pool", position: int):
        self.pool, self.position, self.admitted = pool, position, time.perf_counter()
        self.waited_ms, self.handed, self.released = 0, False, False

    def release(self) -> None:
        with self.pool._lock:
            if not self.released:
                self.released, self.pool.busy = True, self.pool.busy - 1

    def __enter__(self) -> "Slot":
        return self

    def __exit__(self, *exc: Any) -> None:
        if not self.handed:  # no work was started (a bad request): free the place now
            self.release()


class Pool:
    """A bounded thread pool: at most workers + queue_limit requests are accepted at once, the rest get 503."""

    def __init__(self, workers: int, queue_limit: int):
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="voicelib-score")
        self.workers, self.queue_limit, self.capacity, self.busy = workers, queue_limit, workers + queue_limit, 0
        self._lock = threading.Lock()

    def admit(self, busy_message: Callable[[int], str] | None = None) -> Slot:
        """Reserve a place (running or waiting); 503 with Retry-After when the pool and its queue are full."""
        with self._lock:
            if self.busy >= self.capacity:
                queued = max(0, self.busy - self.workers)
                text = busy_message(queued) if busy_message else (
                    f"server busy ({self.busy} requests in progress); retry in a few seconds")
                raise HTTPException(503, text, headers={"Retry-After": str(RETRY_AFTER_S)})
            self.busy += 1
            return Slot(self, max(0, self.busy - self.workers))

    def queue_state(self) -> dict[str, int]:
        """Running and waiting requests (voice-ai-detection's GET /api/queue)."""
        busy = self.busy
        return {"active": min(busy, self.workers), "queued": max(0, busy - self.workers),
                "maxConcurrent": self.workers, "maxQueue": self.queue_limit}

    async def run(self, fn: Callable[..., Any], *args: Any, slot: Slot | None = None) -> Any:
        """Run fn(*args) on a worker thread in `slot` (admitted now when None); 503 when full."""
        slot = slot or self.admit()
        slot.handed = True

        def job() -> Any:
            slot.waited_ms = int((time.perf_counter() - slot.admitted) * 1000)
            try:
                return fn(*args)
            finally:  # counted until the work really ends, even when the client has gone away
                slot.release()

        return await asyncio.get_running_loop().run_in_executor(self.executor, job)


def _upload_path(tmp: str, data: bytes, suffix: str) -> Path:
    """Write the upload; an unknown or missing extension is sniffed (libsndfile reads headers, else ffmpeg)."""
    if f".{suffix}" in SUPPORTED_EXTENSIONS:
        path = Path(tmp) / f"upload.{suffix}"
        path.write_bytes(data)
        return path
    for guess in ("wav", "m4a"):  # libsndfile ignores the extension; ffprobe probes the content
        path = Path(tmp) / f"upload.{guess}"
        path.write_bytes(data)
        try:
            decode.info(path)
            return path
        except AudioError:
            path.unlink()
    raise AudioError("upload", "not a readable audio file (format not recognised); send wav, flac, mp3, ogg or m4a")


def _checked_upload(tmp: str, data: bytes, suffix: str, max_duration: float) -> Path:
    """The upload on disk, refused when empty, unreadable or longer than the limit."""
    if not data:
        raise AudioError("upload", "the audio is empty (0 bytes); send a recording")
    path = _upload_path(tmp, data, suffix)
    duration = decode.info(path).duration
    if duration > max_duration:
        raise AudioTooLong("upload", f"{duration:.1f} s long, over this server's limit of {max_duration:g} s; "
                                     "send a shorter clip")
    return path


@contextlib.contextmanager
def _upload_dir() -> Iterator[str]:
    """A temporary folder for one upload, always removed; its path never reaches an error message."""
    with tempfile.TemporaryDirectory(prefix="voicelib-serve-") as tmp:
        try:
            yield tmp
        except AudioError as exc:
            reason = exc.reason.replace(str(Path(tmp) / "upload"), "upload").replace(tmp, "")
            raise type(exc)("upload", reason) from None


def decode_upload(data: bytes, suffix: str, *, sr: int, max_duration: float) -> Any:
    """Decode one upload whole to float32 mono at `sr`, silence allowed; AudioError when unusable."""
    with _upload_dir() as tmp:
        path = _checked_upload(tmp, data, suffix, max_duration)
        return decode.load(path, sr=sr, max_duration=max_duration, allow_silent=True, min_duration=0.0)


def score_bytes(loaded: Loaded, data: bytes, suffix: str, *, chunk_duration: float, overlap: float,
                max_duration: float) -> dict:
    """Score one uploaded file from a temporary copy that is always removed; AudioError when unusable."""

    with _upload_dir() as tmp:
        path = _checked_upload(tmp, data, suffix, max_duration)
        result = loaded.for_chunk(chunk_duration).score_path(path, chunk_duration=chunk_duration, overlap=overlap)
    result["file"] = "upload"
    return result
