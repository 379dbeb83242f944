"""The service's edges: error bodies per route family, body limits per route, CORS, OPTIONS.

Two families share one port. Under /audio/ everything answers as fAIk-Backend (FastAPI 0.95 and starlette
0.27) does: {"detail": ...} errors, its 422 envelope and allow-all CORS. Everywhere else answers as
voice-ai-detection does: {"status": "error", "message"} errors, 404 for a wrong method, OPTIONS 200
{"status": "ok"} on any path and CORS headers on every response, the origin echoed only when allowed.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException

from voicelib.serve.faik import crash_body, validation_body

log = logging.getLogger(__name__)

DETECTION_PATH = "/api/voice-detection"
JSON_SLACK = 64 * 1024  # bytes of JSON around the base64 audio
VAD_CORS = [(b"access-control-allow-methods", b"POST, GET, OPTIONS"),
            (b"access-control-allow-headers", b"Content-Type, x-api-key"), (b"access-control-max-age", b"600")]
FAIK_METHODS = b"DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"


def is_faik(path: str) -> bool:
    """Whether a path belongs to fAIk-Backend's family (/audio/...)."""
    return path == "/audio" or path.startswith("/audio/")


def error_response(path: str, status: int, message: str, headers: dict | None = None) -> JSONResponse:
    """The error body of the path's family: {"detail"} under /audio/, else {"status": "error", "message"}."""
    text = " ".join(str(message).split())[:500]
    body = {"detail": text} if is_faik(path) else {"status": "error", "message": text}
    return JSONResponse(body, status_code=status, headers=headers)


def json_body_limit(max_audio_bytes: int) -> int:
    """The JSON body limit of /api/voice-detection: the audio limit grown by base64's 4/3, plus slack."""
    return max_audio_bytes * 4 // 3 + JSON_SLACK


class BodyLimit:
    """ASGI middleware: 413 for a Content-Length over the route's limit, and for chunked bodies that grow past it."""

    def __init__(self, app: Any, *, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        peer = scope["path"] == DETECTION_PATH  # its route checks the key and the pool first, then reads
        limit = json_body_limit(self.limit) if peer else self.limit
        declared = dict(scope.get("headers") or []).get(b"content-length")
        too_big = f"request body over this server's limit of {limit} bytes; send a smaller file"
        over = declared is not None and declared.isdigit() and int(declared) > limit
        if over and not peer:
            return await error_response(scope["path"], 413, too_big)(scope, receive, send)
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            if over:  # the peer's route reached its body: refuse before reading any of it
                raise HTTPException(413, too_big)
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise HTTPException(413, too_big)
            return message

        return await self.app(scope, limited, send)


def _adding(send: Callable, extra: list[tuple[bytes, bytes]]) -> Callable:
    async def wrapped(message: dict) -> None:
        if message["type"] == "http.response.start":
            message = dict(message, headers=list(message.get("headers", [])) + extra)
        await send(message)
    return wrapped


class Cors:
    """ASGI middleware: each family's CORS and OPTIONS behaviour (docs/PEERS.md 1.7 and 2.9)."""

    def __init__(self, app: Any, *, origins: tuple[str, ...]):
        self.app, self.origins = app, set(origins)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if is_faik(scope["path"]):
            return await self._faik(scope, receive, send, headers, origin)
        extra = list(VAD_CORS)
        if origin is not None and origin in self.origins:
            extra += [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]
        if scope["method"] == "OPTIONS":  # any path, no key: the peer answers every preflight itself
            return await JSONResponse({"status": "ok"})(scope, receive, _adding(send, extra))
        return await self.app(scope, receive, _adding(send, extra))

    async def _faik(self, scope: dict, receive: Callable, send: Callable, headers: Headers,
                    origin: str | None) -> None:
        """starlette 0.27's CORSMiddleware(allow_origins=["*"], allow_credentials=True, methods and headers "*")."""
        if origin is None:
            return await self.app(scope, receive, send)
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            out = {"Vary": "Origin", "Access-Control-Allow-Origin": origin,
                   "Access-Control-Allow-Methods": FAIK_METHODS.decode(), "Access-Control-Max-Age": "600",
                   "Access-Control-Allow-Credentials": "true"}
            if "access-control-request-headers" in headers:
                out["Access-Control-Allow-Headers"] = headers["access-control-request-headers"]
            return await PlainTextResponse("OK", headers=out)(scope, receive, send)
        extra = [(b"access-control-allow-origin", b"*"), (b"access-control-allow-credentials", b"true")]
        if "cookie" in headers:
            extra = [(b"access-control-allow-origin", origin.encode("latin-1")),
                     (b"access-control-allow-credentials", b"true"), (b"vary", b"Origin")]
        return await self.app(scope, receive, _adding(send, extra))


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """FastAPI's, multipart's and routing's errors; outside /audio/ a wrong method is 404 like the peer's."""
    status, message = exc.status_code, exc.detail
    if not is_faik(request.url.path) and status in (404, 405):
        status, message = 404, "Not Found"
    if is_faik(request.url.path) and status == 400:  # only the body parser answers 400 there: FastAPI 0.95's words
        message = "There was an error parsing the body"
    return error_response(request.url.path, status, message, getattr(exc, "headers", None))


async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422: fAIk's pydantic-v1 envelope under /audio/, else one line naming the fields (never the input)."""
    if is_faik(request.url.path):
        return JSONResponse(validation_body(list(exc.errors())), status_code=422)
    parts = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in exc.errors()]
    return error_response(request.url.path, 422, "; ".join(parts) or "invalid request")


async def crashed(request: Request, exc: Exception) -> JSONResponse:
    """500 without a stack trace in the body; the log has it."""
    log.exception("internal error on %s %s", request.method, request.url.path)
    if is_faik(request.url.path):
        return JSONResponse(crash_body(exc), status_code=500)
    if request.url.path.startswith("/api/"):
        return error_response(request.url.path, 500, "Internal server error. Please try again.")
    return error_response(request.url.path, 500, "internal error; the server log has the details")
