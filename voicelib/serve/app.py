"""HTTP service: `python -m voicelib serve` scores uploads with each language's current model from the store.

Endpoints (README "Detection server"): POST /api/voice-detection (JSON, base64 audio; voice-ai-detection's shape),
POST /audio/analyze-audio (multipart; fAIk-Backend's shape), GET /audio/model-status, GET /audio/model-info,
POST /admin/reload, GET /health and GET / (a page to try it). Every error answers {"status": "error", "message"}
with one line and no stack trace. Scoring runs in a bounded thread pool off the event loop; when the pool and
its queue are full the request gets 503. Models load once per language and a reload swaps them all at once.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import functools
import hmac
import logging
import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from fastapi import APIRouter, Depends, FastAPI, File, Header, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from voicelib.audio import decode
from voicelib.errors import AudioError, AudioTooLong, ModelError
from voicelib.languages import LANGUAGE_NAMES, language_name
from voicelib.serve.shapes import analyze_response, model_info, voice_detection_response

log = logging.getLogger(__name__)

PRESET_CHUNKS = (3.0, 5.0)  # chunk lengths run by onnxruntime sessions exported at load; others run in torch
DETECTION_CHUNK, DETECTION_OVERLAP = 3.0, 0.5  # /api/voice-detection windows (the detect CLI's defaults)
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

    from voicelib.model import store
    from voicelib.scoring.detect import Detector

    model_dir = store.current(language, root=config.models_root)
    det = Detector.load(model_dir, device=config.device, backend=config.backend, max_duration=config.max_duration)
    warm = np.random.default_rng(0).standard_normal(det.sample_rate * 6).astype(np.float32) * 0.1
    for chunk in PRESET_CHUNKS:  # exports the onnx sessions now, not during a request
        det.score_array(warm, det.sample_rate, chunk_duration=chunk)
    torch_det = dataclasses.replace(det, backend="torch", _sessions={})
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
        from voicelib.model import store

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


class Pool:
    """A bounded thread pool: at most workers + queue_limit requests are accepted at once, the rest get 503."""

    def __init__(self, workers: int, queue_limit: int):
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="voicelib-score")
        self.workers, self.capacity, self.busy = workers, workers + queue_limit, 0
        self._lock = threading.Lock()

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run fn(*args) on a worker thread; 503 when the pool and its queue are full."""
        with self._lock:
            if self.busy >= self.capacity:
                raise HTTPException(503, f"server busy ({self.busy} requests in progress); retry in a few seconds")
            self.busy += 1

        def job() -> Any:
            try:
                return fn(*args)
            finally:  # counted until the work really ends, even when the client has gone away
                with self._lock:
                    self.busy -= 1

        return await asyncio.get_running_loop().run_in_executor(self.executor, job)


def score_bytes(loaded: Loaded, data: bytes, suffix: str, *, chunk_duration: float, overlap: float,
                max_duration: float) -> dict:
    """Score one uploaded file from a temporary copy that is always removed; AudioError when unusable."""

    if not data:
        raise AudioError("upload", "the audio is empty (0 bytes); send a recording")
    with tempfile.TemporaryDirectory(prefix="voicelib-serve-") as tmp:
        path = Path(tmp) / f"upload.{suffix}"
        path.write_bytes(data)
        duration = decode.info(path).duration
        if duration > max_duration:
            raise AudioTooLong("upload", f"{duration:.1f} s long, over this server's limit of {max_duration:g} s; "
                                         "send a shorter clip")
        result = loaded.for_chunk(chunk_duration).score_path(path, chunk_duration=chunk_duration, overlap=overlap)
    result["file"] = "upload"
    return result


def page_html() -> str:
    """The self-contained page served at GET / (package data voicelib/serve/web/index.html)."""
    return resources.files("voicelib.serve").joinpath("web/index.html").read_text(encoding="utf-8")


class VoiceDetection(BaseModel):
    """The JSON body of POST /api/voice-detection."""

    language: str
    audioFormat: str
    audioBase64: str


def _error(status: int, message: str) -> JSONResponse:
    """The one error shape: {"status": "error", "message": one line}."""
    return JSONResponse({"status": "error", "message": " ".join(str(message).split())[:500]}, status_code=status)


class BodyLimit:
    """ASGI middleware: 413 for a Content-Length over the limit, and for chunked bodies that grow past it."""

    def __init__(self, app: Any, *, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        too_big = f"request body over this server's limit of {self.limit} bytes; send a smaller file"
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await _error(413, too_big)(scope, receive, send)
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise HTTPException(413, too_big)
            return message

        return await self.app(scope, limited, send)


router = APIRouter()


def _state(request: Request) -> tuple[ServeConfig, Models, Pool]:
    return request.app.state.config, request.app.state.models, request.app.state.pool


def check_key(request: Request, x_api_key: str | None = Header(None)) -> None:
    """Dependency of the keyed routes (it runs before body validation): 401 without a configured key."""
    if not key_ok(x_api_key, request.app.state.config.api_keys):
        raise HTTPException(401, "missing or invalid API key; send a valid key in the x-api-key header")


KEYED = [Depends(check_key)]


async def _score(request: Request, loaded: Loaded, data: bytes, suffix: str, chunk: float, overlap: float) -> dict:
    """Score an upload on the pool; 400 for unusable audio, 413 over the duration limit."""
    config, _, pool = _state(request)
    start = time.perf_counter()
    try:
        result = await pool.run(functools.partial(score_bytes, loaded, data, suffix, chunk_duration=chunk,
                                                  overlap=overlap, max_duration=config.max_duration))
    except AudioTooLong as exc:
        raise HTTPException(413, exc.reason) from None
    except AudioError as exc:
        raise HTTPException(400, exc.reason) from None
    log.info("scored %.1f s of %s audio (%s) in %.2f s", result["duration"], loaded.language,
             result["classification"], time.perf_counter() - start)
    return result


@router.post("/api/voice-detection", dependencies=KEYED)
async def voice_detection(request: Request, body: VoiceDetection):
    """voice-ai-detection's endpoint: base64 audio in JSON."""
    loaded = request.app.state.models.pick(body.language)
    fmt = body.audioFormat.strip().lower().lstrip(".")
    if fmt not in AUDIO_FORMATS:
        raise HTTPException(400, f"unsupported audioFormat {body.audioFormat[:20]!r}; "
                                 f"use one of {', '.join(AUDIO_FORMATS)}")
    text = body.audioBase64.split(",", 1)[1] if body.audioBase64.startswith("data:") else body.audioBase64
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise HTTPException(400, "audioBase64 is not valid base64; encode the file's bytes with base64") from None
    result = await _score(request, loaded, data, fmt, DETECTION_CHUNK, DETECTION_OVERLAP)
    return voice_detection_response(result, loaded.language)


@router.post("/audio/analyze-audio", dependencies=KEYED)
async def analyze_audio(request: Request, file: UploadFile = File(...),
                        chunk_duration: float = Query(5.0, ge=1.0, le=30.0),
                        overlap: float = Query(0.5, ge=0.0, le=0.9), language: str | None = Query(None)):
    """fAIk-Backend's endpoint: a multipart upload scored chunk by chunk."""
    loaded = request.app.state.models.pick(language)
    suffix = Path(file.filename or "").suffix.lower().lstrip(".")
    if suffix not in AUDIO_FORMATS:
        raise HTTPException(400, f"unsupported file type {suffix or '(no extension)'!r}; "
                                 f"upload one of {', '.join(AUDIO_FORMATS)}")
    result = await _score(request, loaded, await file.read(), suffix, chunk_duration, overlap)
    return analyze_response(result, loaded)


@router.get("/audio/model-status", dependencies=KEYED)
async def model_status(request: Request):
    """Which versions are loaded, the pool and the limits."""
    config, models, pool = _state(request)
    current = models.by_language
    languages = {lg: {"version": m.version, "loaded_at": m.loaded_at, "backend": m.detector.backend}
                 for lg, m in current.items()}
    return {"model_loaded": bool(current), "languages": languages, "load_errors": models.errors,
            "workers": pool.workers, "in_progress": pool.busy, "capacity": pool.capacity,
            "max_duration_s": config.max_duration, "max_body_bytes": config.max_body_bytes}


@router.get("/audio/model-info", dependencies=KEYED)
async def info(request: Request):
    """What each loaded model is (from its config.json and metrics.json)."""
    current = request.app.state.models.by_language
    return {"model_loaded": bool(current), "languages": list(current), "default_language": next(iter(current), None),
            "models": {lg: model_info(m) for lg, m in current.items()}}


@router.post("/admin/reload", dependencies=KEYED)
async def reload(request: Request):
    """Load newly promoted models and swap them in."""
    outcome = await asyncio.get_running_loop().run_in_executor(None, request.app.state.models.reload)
    return {"status": "success" if not outcome["errors"] else "partial", **outcome}


@router.get("/health")
async def health(request: Request):
    """Liveness, the number of loaded models and whether a key is needed (the page asks)."""
    config, models, _ = _state(request)
    return {"status": "ok", "models_loaded": len(models.by_language), "auth_required": bool(config.api_keys)}


@router.get("/", response_class=HTMLResponse)
async def page():
    """The page to try the service."""
    return HTMLResponse(page_html())


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return _error(exc.status_code, exc.detail)


async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 naming the fields; never echoes the input (it may be audio)."""
    parts = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in exc.errors()]
    return _error(422, "; ".join(parts) or "invalid request")


async def _crashed(request: Request, exc: Exception) -> JSONResponse:
    log.exception("internal error on %s %s", request.method, request.url.path)
    return _error(500, "internal error; the server log has the details")


def create_app(config: ServeConfig, *, models: Models | None = None) -> FastAPI:
    """The FastAPI application for `config` (loads the models unless given)."""
    import voicelib

    models = models or Models(config)
    if not models.by_language:
        models.reload()
    if not config.api_keys:
        log.warning("no API keys configured (VOICELIB_API_KEYS / --api-key-file): every caller is accepted")
    app = FastAPI(title="voicelib detection service", version=voicelib.__version__, docs_url="/docs", redoc_url=None)
    app.add_middleware(BodyLimit, limit=config.max_body_bytes)
    app.add_exception_handler(StarletteHTTPException, _http_error)  # FastAPI's, multipart's, routing's 404/405
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(Exception, _crashed)
    app.state.config, app.state.models = config, models
    app.state.pool = Pool(config.workers, config.queue_limit)
    app.include_router(router)
    return app


def run(config: ServeConfig, *, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Load the models and serve until interrupted."""
    import torch
    import uvicorn

    from voicelib.scoring.stream import fix_mmap_threshold

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // config.workers))  # one core share per scoring thread
    fix_mmap_threshold()  # steady memory under load (see voicelib.scoring.stream)
    app = create_app(config)
    log.info("serving %d models on http://%s:%d", len(app.state.models.by_language), host, port)
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_keep_alive=5, server_header=False)
