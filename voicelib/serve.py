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

from fastapi import Depends, FastAPI, File, Header, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from voicelib.errors import AudioError, AudioTooLong, ModelError
from voicelib.languages import LANGUAGE_NAMES, language_name

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

    from voicelib import store
    from voicelib.detect import Detector

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
        from voicelib import store

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
    from voicelib import audio

    if not data:
        raise AudioError("upload", "the audio is empty (0 bytes); send a recording")
    with tempfile.TemporaryDirectory(prefix="voicelib-serve-") as tmp:
        path = Path(tmp) / f"upload.{suffix}"
        path.write_bytes(data)
        duration = audio.info(path).duration
        if duration > max_duration:
            raise AudioTooLong("upload", f"{duration:.1f} s long, over this server's limit of {max_duration:g} s; "
                                         "send a shorter clip")
        result = loaded.for_chunk(chunk_duration).score_path(path, chunk_duration=chunk_duration, overlap=overlap)
    result["file"] = "upload"
    return result


def explain(result: dict) -> str:
    """One sentence that reads the verdict off the per-chunk scores."""
    chunks = [c for c in result["chunks"] if c.get("score") is not None]
    threshold = result["threshold"]
    above = sum(c["score"] >= threshold for c in chunks)
    top = max(chunks, key=lambda c: c["score"])
    verdict = {"AI_GENERATED": "AI-generated", "HUMAN": "human",
               "INCONCLUSIVE": "inconclusive (too close to the threshold to call)"}[result["classification"]]
    skipped = f", {result['skippedChunks']} silent chunks skipped" if result["skippedChunks"] else ""
    return (f"{above} of {len(chunks)} chunks score above the threshold {threshold:.2f}{skipped}, the most AI-like "
            f"stretch being {round(top['start'], 1):g}-{round(top['end'], 1):g} s at {top['score']:.2f}, "
            f"so the clip reads as {verdict}.")


def voice_detection_response(result: dict, language: str) -> dict:
    """voice-ai-detection's response shape."""
    return {"status": "success", "language": language.title(), "classification": result["classification"],
            "aiScore": result["aiScore"], "confidenceScore": result["confidence"],
            "languageDistribution": result["languageDistribution"], "multiSpeakerScore": result["multiSpeakerScore"],
            "explanation": explain(result)}


def analyze_response(result: dict, loaded: Loaded) -> dict:
    """fAIk-Backend's response shape, with the detector's summary under `summary`."""
    from voicelib.detect import AI, classify

    threshold, chunks = result["threshold"], []
    for i, c in enumerate(result["chunks"]):
        score = c.get("score")
        if score is None:
            chunks.append({"chunk_index": i, "start_time": c["start"], "end_time": c["end"], "is_ai_generated": False,
                           "confidence": 0.0, "class_probabilities": {}, "skipped": "silent"})
            continue
        chunks.append({"chunk_index": i, "start_time": c["start"], "end_time": c["end"],
                       "is_ai_generated": score >= threshold,
                       "confidence": round(classify(score, threshold, band=0)[1], 6),
                       "class_probabilities": {"fake": score, "real": round(1.0 - score, 6)}})
    scores = [c["score"] for c in result["chunks"] if c.get("score") is not None]
    n_ai = sum(s >= threshold for s in scores)
    summary = {"classification": result["classification"], "ai_score": result["aiScore"], "threshold": threshold,
               "ai_chunks": n_ai, "human_chunks": len(scores) - n_ai, "skipped_chunks": result["skippedChunks"],
               "ai_chunk_ratio": round(n_ai / len(scores), 6), "mean_chunk_score": round(sum(scores) / len(scores), 6),
               "max_chunk_score": max(scores), "duration": result["duration"], "language": loaded.language,
               "model_version": loaded.version, "language_distribution": result["languageDistribution"],
               "multi_speaker_score": result["multiSpeakerScore"], "explanation": explain(result)}
    return {"is_deepfake": result["classification"] == AI, "overall_confidence": result["confidence"],
            "model_loaded": True, "total_chunks": len(chunks), "chunks": chunks, "summary": summary}


def model_info(loaded: Loaded) -> dict:
    """What one loaded model is: version, labels, threshold, training data and test metrics from its directory."""
    det, meta = loaded.detector, loaded.detector.meta
    metrics = meta.get("metrics") or {}
    return {"version": loaded.version, "loaded_at": loaded.loaded_at, "labels": meta.get("labels", ["human", "ai"]),
            "class_mapping": {"0": "HUMAN", "1": "AI_GENERATED"}, "positive_label": meta.get("positive_label", "ai"),
            "threshold": round(det.threshold, 6), "inconclusive_band": det.band, "sample_rate": det.sample_rate,
            "segment_seconds": meta.get("segment_seconds"), "language_head": det.languages,
            "language_head_active": bool(meta.get("language_head_active", True)), "backend": det.backend,
            "created": meta.get("created"), "training_data": meta.get("data"),
            "validation_metrics": {k: v for k, v in metrics.items() if k != "test"} or None,
            "test_metrics": metrics.get("test")}


def page_html() -> str:
    """The self-contained page served at GET / (package data voicelib/web/index.html)."""
    return resources.files("voicelib").joinpath("web/index.html").read_text(encoding="utf-8")


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


def create_app(config: ServeConfig, *, models: Models | None = None):
    """The FastAPI application for `config` (loads the models unless given)."""
    import voicelib

    models = models or Models(config)
    if not models.by_language:
        models.reload()
    if not config.api_keys:
        log.warning("no API keys configured (VOICELIB_API_KEYS / --api-key-file): every caller is accepted")
    pool = Pool(config.workers, config.queue_limit)
    app = FastAPI(title="voicelib detection service", version=voicelib.__version__, docs_url="/docs", redoc_url=None)
    app.add_middleware(BodyLimit, limit=config.max_body_bytes)
    app.state.models, app.state.pool = models, pool

    @app.exception_handler(StarletteHTTPException)  # FastAPI's, the multipart parser's and routing's 404/405
    async def http_error(request: Request, exc: StarletteHTTPException):
        return _error(exc.status_code, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):  # never echo the input (it may be audio)
        parts = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in exc.errors()]
        return _error(422, "; ".join(parts) or "invalid request")

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception):
        log.exception("internal error on %s %s", request.method, request.url.path)
        return _error(500, "internal error; the server log has the details")

    def check_key(x_api_key: str | None = Header(None)) -> None:  # a dependency: runs before body validation
        if not key_ok(x_api_key, config.api_keys):
            raise HTTPException(401, "missing or invalid API key; send a valid key in the x-api-key header")

    keyed = [Depends(check_key)]

    async def score(loaded: Loaded, data: bytes, suffix: str, chunk: float, overlap: float) -> dict:
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

    @app.post("/api/voice-detection", dependencies=keyed)
    async def voice_detection(body: VoiceDetection):
        loaded = models.pick(body.language)
        fmt = body.audioFormat.strip().lower().lstrip(".")
        if fmt not in AUDIO_FORMATS:
            raise HTTPException(400, f"unsupported audioFormat {body.audioFormat[:20]!r}; "
                                     f"use one of {', '.join(AUDIO_FORMATS)}")
        text = body.audioBase64.split(",", 1)[1] if body.audioBase64.startswith("data:") else body.audioBase64
        try:
            data = base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError):
            raise HTTPException(400, "audioBase64 is not valid base64; encode the file's bytes with base64") from None
        result = await score(loaded, data, fmt, DETECTION_CHUNK, DETECTION_OVERLAP)
        return voice_detection_response(result, loaded.language)

    @app.post("/audio/analyze-audio", dependencies=keyed)
    async def analyze_audio(file: UploadFile = File(...), chunk_duration: float = Query(5.0, ge=1.0, le=30.0),
                            overlap: float = Query(0.5, ge=0.0, le=0.9), language: str | None = Query(None)):
        loaded = models.pick(language)
        suffix = Path(file.filename or "").suffix.lower().lstrip(".")
        if suffix not in AUDIO_FORMATS:
            raise HTTPException(400, f"unsupported file type {suffix or '(no extension)'!r}; "
                                     f"upload one of {', '.join(AUDIO_FORMATS)}")
        data = await file.read()
        return analyze_response(await score(loaded, data, suffix, chunk_duration, overlap), loaded)

    @app.get("/audio/model-status", dependencies=keyed)
    async def model_status():
        current = models.by_language
        languages = {lg: {"version": m.version, "loaded_at": m.loaded_at, "backend": m.detector.backend}
                     for lg, m in current.items()}
        return {"model_loaded": bool(current), "languages": languages, "load_errors": models.errors,
                "workers": pool.workers, "in_progress": pool.busy, "capacity": pool.capacity,
                "max_duration_s": config.max_duration, "max_body_bytes": config.max_body_bytes}

    @app.get("/audio/model-info", dependencies=keyed)
    async def info():
        current = models.by_language
        return {"model_loaded": bool(current), "languages": list(current),
                "default_language": next(iter(current), None),
                "models": {lg: model_info(m) for lg, m in current.items()}}

    @app.post("/admin/reload", dependencies=keyed)
    async def reload():
        outcome = await asyncio.get_running_loop().run_in_executor(None, models.reload)
        return {"status": "success" if not outcome["errors"] else "partial", **outcome}

    @app.get("/health")
    async def health():
        return {"status": "ok", "models_loaded": len(models.by_language), "auth_required": bool(config.api_keys)}

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return HTMLResponse(page_html())

    return app


def run(config: ServeConfig, *, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Load the models and serve until interrupted."""
    import torch
    import uvicorn

    from voicelib.stream import fix_mmap_threshold

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // config.workers))  # one core share per scoring thread
    fix_mmap_threshold()  # steady memory under load (see voicelib.stream)
    app = create_app(config)
    log.info("serving %d models on http://%s:%d", len(app.state.models.by_language), host, port)
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_keep_alive=5, server_header=False)
