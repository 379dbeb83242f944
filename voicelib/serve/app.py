"""HTTP service: `python -m voicelib serve` scores uploads with each language's current model from the store.

Two peers' contracts on one port (README "Detection server", docs/PEERS.md): voice-ai-detection's
POST /api/voice-detection (JSON, base64 audio) and GET /api/queue, keyed, a bad key answering 404; and
fAIk-Backend's POST /audio/analyze-audio (multipart `audio_file`), GET /audio/model-status and
GET /audio/model-info, open like fAIk's (VOICELIB_FAIK_AUTH=key puts analyze-audio behind the key). Ours:
POST /v1/analyze (keyed, the page's), POST /admin/reload, GET /health and GET / (a page to try it). Scoring
runs in a bounded thread pool off the event loop; when the pool and its queue are full the request gets 503
with Retry-After. Models load once per language and a reload swaps them all at once.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import math
import os
import time
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Mapping

from fastapi import APIRouter, Depends, FastAPI, File, Header, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

import voicelib
from voicelib.errors import AudioError, AudioTooLong
from voicelib.scoring.stream import fix_mmap_threshold
from voicelib.serve.faik import debug_audio, missing_upload, score_windows
from voicelib.serve.middleware import DETECTION_PATH, BodyLimit, Cors, crashed, http_error, invalid, is_faik
from voicelib.serve.models import Models, Pool, ServeConfig, Slot, key_ok, read_api_keys, score_bytes
from voicelib.serve.ratelimit import RateLimiter, parse_rate_limit
from voicelib.serve.shapes import analyze_response, faik_model_info, model_info, model_name, voice_detection_response
from voicelib.serve.vad import decode_base64, parse_request

log = logging.getLogger(__name__)


DETECTION_CHUNK, DETECTION_OVERLAP = 3.0, 0.5  # /api/voice-detection windows (the detect CLI's defaults)


def page_html() -> str:
    """The self-contained page served at GET / (package data voicelib/serve/web/index.html)."""
    return resources.files("voicelib.serve").joinpath("web/index.html").read_text(encoding="utf-8")


router = APIRouter()


def _state(request: Request) -> tuple[ServeConfig, Models, Pool]:
    return request.app.state.config, request.app.state.models, request.app.state.pool


def check_key(request: Request, x_api_key: str | None = Header(None)) -> None:
    """Dependency of our keyed routes (it runs before body validation): 401 without a configured key."""
    if not key_ok(x_api_key, request.app.state.config.api_keys):
        raise HTTPException(401, "missing or invalid API key; send a valid key in the x-api-key header")


def check_faik_key(request: Request, x_api_key: str | None = Header(None)) -> None:
    """fAIk's routes need no key unless the operator asked for one (VOICELIB_FAIK_AUTH=key)."""
    config = request.app.state.config
    if config.faik_auth == "key" and not key_ok(x_api_key, config.api_keys):
        raise HTTPException(401, "Not authenticated")


def _peer_key(request: Request, given: str | None) -> None:
    """voice-ai-detection's gate: the rate limit (when on), then the key; a caller without a valid key gets 404."""
    valid = key_ok(given, request.app.state.config.api_keys)
    limiter = request.app.state.limiter
    client = request.client.host if request.client else "unknown"
    wait = limiter.take(f"{client}:{'auth' if given else 'anon'}") if limiter else 0.0
    if wait and valid:
        raise HTTPException(429, "Too many requests. Please wait.", headers={"Retry-After": str(math.ceil(wait))})
    if wait or not valid:
        raise HTTPException(404, "Not Found")


KEYED = [Depends(check_key)]


async def _score(pool: Pool, fn: Callable[[], Any], *, slot: Slot | None = None, unusable: str = "{}",
                 unusable_status: int = 400) -> Any:
    """Run a scoring call on the pool; 413 over the duration limit, `unusable_status` for unusable audio."""
    start = time.perf_counter()
    try:
        out = await pool.run(fn, slot=slot)
    except AudioTooLong as exc:
        raise HTTPException(413, exc.reason) from None
    except AudioError as exc:
        raise HTTPException(unusable_status, unusable.format(exc.reason)) from None
    log.info("scored an upload in %.2f s", time.perf_counter() - start)
    return out


@router.post(DETECTION_PATH)
async def voice_detection(request: Request, x_api_key: str | None = Header(None)):
    """voice-ai-detection's endpoint: key, then a place in the pool, then the body (read here, any Content-Type)."""
    config, models, pool = _state(request)
    _peer_key(request, x_api_key)
    with pool.admit(lambda queued: f"Queue is full. Please wait. Users in queue: {queued}.") as slot:
        req = parse_request(await request.body(), max_audio_bytes=config.max_body_bytes)
        loaded = models.by_language.get(req.language_name)
        if loaded is None:
            raise HTTPException(500, f'No model configured for language "{req.language}".')
        data = decode_base64(req.audio_base64)
        result = await _score(pool, functools.partial(
            score_bytes, loaded, data, req.audio_format, chunk_duration=DETECTION_CHUNK, overlap=DETECTION_OVERLAP,
            max_duration=config.max_duration), slot=slot)
    body = voice_detection_response(result, req.language)
    if slot.position:  # it waited for a worker
        body["queue"] = {"position": slot.position, "waitMs": slot.waited_ms}
    return body


@router.get("/api/queue")
async def queue(request: Request, x_api_key: str | None = Header(None)):
    """voice-ai-detection's queue state: running and waiting requests and the pool's sizes."""
    _peer_key(request, x_api_key)
    return {"status": "ok", **request.app.state.pool.queue_state()}


@router.post("/audio/analyze-audio", dependencies=[Depends(check_faik_key)])
@router.post("/v1/analyze", dependencies=KEYED)
async def analyze_audio(request: Request, audio_file: UploadFile | None = File(None),
                        file: UploadFile | None = File(None),
                        chunk_duration: float = Query(5.0, ge=1.0, le=30.0),
                        overlap: float = Query(0.5, ge=0.0, le=0.9), language: str | None = Query(None)):
    """fAIk-Backend's endpoint (and ours, keyed, at /v1/analyze): every fAIk window of an upload scored."""
    upload = audio_file or file  # `file`: the field name this route had before it followed fAIk
    if upload is None:
        raise RequestValidationError([missing_upload()])
    config, models, pool = _state(request)
    faik = is_faik(request.url.path)
    if faik and not models.by_language:
        raise HTTPException(503, "Audio classification model is not loaded. Please try again later.")
    loaded = models.pick(language)
    suffix = Path(upload.filename or "").suffix.lower().lstrip(".")  # unknown or none: sniffed from the bytes
    result, bounds = await _score(pool, functools.partial(
        score_windows, loaded, await upload.read(), suffix, chunk_duration=chunk_duration, overlap=overlap,
        max_duration=config.max_duration), unusable="Error analyzing audio file: {}" if faik else "{}",
        unusable_status=500 if faik else 400)
    return analyze_response(result, loaded, bounds, chunk_duration=chunk_duration, overlap=overlap)


@router.post("/audio/debug-audio", dependencies=[Depends(check_faik_key)])
async def debug(request: Request, audio_file: UploadFile | None = File(None)):
    """fAIk's debugging aid: how an upload would be cut for 16 window layouts (no model needed)."""
    if audio_file is None:
        raise RequestValidationError([missing_upload()])
    config, _, pool = _state(request)
    suffix = Path(audio_file.filename or "").suffix.lower().lstrip(".")
    return await _score(pool, functools.partial(debug_audio, await audio_file.read(), suffix, audio_file.filename,
                                                max_duration=config.max_duration),
                        unusable="Error debugging audio file: {}", unusable_status=500)


@router.get("/audio/model-status")
async def model_status(request: Request):
    """fAIk's two keys (open, like fAIk's), then which versions are loaded, the pool and the limits."""
    config, models, pool = _state(request)
    current = models.by_language
    languages = {lg: {"version": m.version, "loaded_at": m.loaded_at, "backend": m.detector.backend}
                 for lg, m in current.items()}
    first = next(iter(current.values()), None)
    return {"model_loaded": bool(current), "model_name": model_name(first) if first else None,
            "languages": languages, "load_errors": models.errors, "workers": pool.workers,
            "in_progress": pool.busy, "capacity": pool.capacity, "max_duration_s": config.max_duration,
            "max_body_bytes": config.max_body_bytes}


@router.get("/audio/model-info")
async def info(request: Request):
    """fAIk's six keys for the default model (open, 503 without one), then each loaded model's details."""
    current = request.app.state.models.by_language
    if not current:
        raise HTTPException(503, "Model is not loaded")
    first = next(iter(current.values()))
    return {**faik_model_info(first), "model_loaded": True, "languages": list(current),
            "default_language": first.language, "models": {lg: model_info(m) for lg, m in current.items()}}


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


def create_app(config: ServeConfig, *, models: Models | None = None) -> FastAPI:
    """The FastAPI application for `config` (loads the models unless given)."""

    models = models or Models(config)
    if not models.by_language:
        models.reload()
    if not config.api_keys:
        log.warning("no API keys configured (VOICELIB_API_KEYS / --api-key-file): every caller is accepted")
    elif config.faik_auth == "none":
        log.warning("/audio/analyze-audio answers without a key, as fAIk-Backend does; "
                    "set VOICELIB_FAIK_AUTH=key to require one")
    app = FastAPI(title="voicelib detection service", version=voicelib.__version__, docs_url="/docs", redoc_url=None)
    app.add_middleware(BodyLimit, limit=config.max_body_bytes)
    app.add_middleware(Cors, origins=config.cors_origins)  # outermost: 413s and OPTIONS get CORS headers too
    app.add_exception_handler(StarletteHTTPException, http_error)  # FastAPI's, multipart's, routing's 404/405
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(Exception, crashed)
    app.state.config, app.state.models = config, models
    app.state.pool = Pool(config.workers, config.queue_limit)
    app.state.limiter = RateLimiter(*config.rate_limit) if config.rate_limit else None
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


def _origins(environ: Mapping[str, str]) -> tuple[str, ...]:
    text = environ.get("VOICELIB_CORS_ORIGINS", environ.get("CORS_ORIGINS", ""))
    return tuple(o.strip() for o in text.split(",") if o.strip())


def config_from(args: Any, environ: Mapping[str, str]) -> ServeConfig:
    """The ServeConfig of `serve`'s options plus the environment (README "Detection server" lists the names)."""
    # keys: VOICELIB_API_KEYS plus VOICE_DETECT_API_KEY (voice-ai-detection's name); VOICELIB_CORS_ORIGINS or the
    # peer's CORS_ORIGINS; VOICELIB_FAIK_AUTH none|key; VOICELIB_RATE_LIMIT "12,0.2" (unset: no limit). These go
    # through the environment until __main__ grows the matching flags.
    if args.workers < 1 or args.queue_limit < 0 or args.max_duration <= 0 or args.max_body_mb <= 0:
        raise ValueError("--workers must be >= 1, --queue-limit >= 0, --max-duration and --max-body-mb > 0")
    env_keys = ",".join(environ.get(name, "") for name in ("VOICELIB_API_KEYS", "VOICE_DETECT_API_KEY"))
    keys = read_api_keys(env=env_keys, key_file=args.api_key_file)
    return ServeConfig(models_root=args.models_root, api_keys=keys, max_body_bytes=int(args.max_body_mb * 2**20),
                       max_duration=args.max_duration, workers=args.workers, queue_limit=args.queue_limit,
                       backend=args.backend, faik_auth=environ.get("VOICELIB_FAIK_AUTH", "none").strip().lower(),
                       cors_origins=_origins(environ), rate_limit=parse_rate_limit(environ.get("VOICELIB_RATE_LIMIT")))


def serve_command(args: Any) -> int:
    """`python -m voicelib serve`: check the options, read the API keys and settings, run the service."""
    config = config_from(args, os.environ)
    run(config, host=args.host, port=args.port)
    return 0
