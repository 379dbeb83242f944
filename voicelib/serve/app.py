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
import functools
import logging
import os
import time
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from fastapi import APIRouter, Depends, FastAPI, File, Header, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

import voicelib
from voicelib.errors import AudioError, AudioTooLong
from voicelib.scoring.stream import fix_mmap_threshold
from voicelib.serve.models import (
    AUDIO_FORMATS,
    Loaded,
    Models,
    Pool,
    ServeConfig,
    key_ok,
    read_api_keys,
    score_bytes,
)
from voicelib.serve.shapes import analyze_response, model_info, voice_detection_response

log = logging.getLogger(__name__)


DETECTION_CHUNK, DETECTION_OVERLAP = 3.0, 0.5  # /api/voice-detection windows (the detect CLI's defaults)


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


    torch.set_num_threads(max(1, (os.cpu_count() or 1) // config.workers))  # one core share per scoring thread
    fix_mmap_threshold()  # steady memory under load (see voicelib.scoring.stream)
    app = create_app(config)
    log.info("serving %d models on http://%s:%d", len(app.state.models.by_language), host, port)
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_keep_alive=5, server_header=False)


def serve_command(args: Any) -> int:
    """`python -m voicelib serve`: check the options, read the API keys, run the service."""
    if args.workers < 1 or args.queue_limit < 0 or args.max_duration <= 0 or args.max_body_mb <= 0:
        raise ValueError("--workers must be >= 1, --queue-limit >= 0, --max-duration and --max-body-mb > 0")
    keys = read_api_keys(env=os.environ.get("VOICELIB_API_KEYS"), key_file=args.api_key_file)
    run(ServeConfig(models_root=args.models_root, api_keys=keys, max_body_bytes=int(args.max_body_mb * 2**20),
                    max_duration=args.max_duration, workers=args.workers, queue_limit=args.queue_limit,
                    backend=args.backend), host=args.host, port=args.port)
    return 0
