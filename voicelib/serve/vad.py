"""voice-ai-detection's side of the service: its request checks in its order and words, and lenient base64.

The body is JSON whatever the Content-Type; the first failed check answers 400 with the peer's message
(docs/PEERS.md section 2.3). Base64 may use the standard or the URL-safe alphabet, with or without padding,
with whitespace and line breaks anywhere; a `data:...;base64,` prefix is stripped.
"""
from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass

from fastapi import HTTPException

from voicelib.languages import language_name
from voicelib.serve.models import AUDIO_FORMATS

MALFORMED_JSON = "Invalid API key or malformed request"  # the peer's words for a body that is not JSON
_ALPHABET = re.compile(r"[A-Za-z0-9+/]*")


@dataclass(frozen=True)
class DetectionRequest:
    """A checked POST /api/voice-detection body: the language as sent, our language name, format and base64."""

    language: str
    language_name: str
    audio_format: str
    audio_base64: str


def _blank(value: object) -> bool:
    return not isinstance(value, str) or not value.strip()


def decoded_size(text: str) -> int:
    """The peer's estimate of the decoded size: floor(len * 3 / 4) minus the padding, whitespace ignored."""
    compact = "".join(text.split())
    padding = 2 if compact.endswith("==") else 1 if compact.endswith("=") else 0
    return len(compact) * 3 // 4 - padding


def parse_request(raw: bytes, *, max_audio_bytes: int) -> DetectionRequest:
    """Check a body in the peer's order; HTTPException(400, its message) at the first failure."""
    if not raw.strip():
        raise HTTPException(400, "Malformed request body.")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser's stack
        raise HTTPException(400, MALFORMED_JSON) from None
    if isinstance(body, list):  # a JS array is an object without these keys
        body = {}
    if not isinstance(body, dict):
        raise HTTPException(400, "Malformed request body.")
    language, fmt, audio = body.get("language"), body.get("audioFormat"), body.get("audioBase64")
    if _blank(language):
        raise HTTPException(400, "Language is required.")
    try:
        name = language_name(language.strip())
    except ValueError:
        raise HTTPException(400, "Unsupported language.") from None
    if _blank(fmt):
        raise HTTPException(400, "audioFormat is required.")
    if fmt.strip().lower().lstrip(".") not in AUDIO_FORMATS:
        raise HTTPException(400, "Unsupported audio format.")
    if _blank(audio):
        raise HTTPException(400, "audioBase64 is required.")
    if decoded_size(audio) > max_audio_bytes:
        raise HTTPException(400, f"File size exceeds {max_audio_bytes / 2**20:g} MB limit.")
    return DetectionRequest(language, name, fmt.strip().lower().lstrip("."), audio)


def decode_base64(text: str) -> bytes:
    """Decode standard or URL-safe base64, padded or not, whitespace ignored; HTTPException(400) when it is not."""
    if text.lstrip().startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    compact = "".join(text.split()).replace("-", "+").replace("_", "/").rstrip("=")
    if not _ALPHABET.fullmatch(compact):
        raise HTTPException(400, "audioBase64 is not valid base64; encode the file's bytes with base64")
    compact = compact[:len(compact) - 1] if len(compact) % 4 == 1 else compact  # a lone 6 bits carry no byte
    try:
        data = base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise HTTPException(400, "audioBase64 is not valid base64; encode the file's bytes with base64") from None
    if not data:
        raise HTTPException(400, "Failed to decode audio data.")
    return data
