"""fAIk-Backend's side of the service: its window layout, scoring every window, and its error bodies.

fAIk cuts `C = int(chunk_duration * sr)` samples every `S = C - int(overlap * C)`, drops the tail after the
last full window and pads audio shorter than one window to a single window [0, chunk_duration]. Every window
is scored, silent ones too. Errors answer FastAPI's {"detail": ...}, and 422 the pydantic-v1 envelope of
fAIk's error handler (docs/PEERS.md sections 1.3 and 4.A).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from voicelib.errors import AudioError
from voicelib.scoring.windows import tile, window_length
from voicelib.serve.models import Loaded, decode_upload

FAIK_RATE = 16000  # fAIk decodes every upload to 16 kHz
BATCH_SAMPLES = 16 * 2**20  # samples of windows stacked at once (64 MB): bounds memory on long, overlapping uploads


def faik_bounds(n_samples: int, sr: int, *, chunk_duration: float, overlap: float) -> list[tuple[int, int]]:
    """fAIk-Backend's windows as (start, end) samples: no tail window; one padded window for short audio."""
    length = int(chunk_duration * sr)
    step = max(length - int(overlap * length), 1)
    if n_samples < length:
        return [(0, length)]
    return [(i, i + length) for i in range(0, n_samples - length + 1, step)]


def _window(det: Any, wave: np.ndarray, start: int, end: int, length: int) -> np.ndarray:
    """One window prepared as the model's training clips were, filled to the network's length by tiling."""
    segment = wave[start:min(end, wave.size)]
    if det.preprocess is not None and det.preprocess.active:
        try:
            segment = det.prepared(segment)
        except (AudioError, ValueError):
            pass  # a window preparation cannot use (silence) is scored as it is, like fAIk scores every window
    return tile(segment, length)


def score_windows(loaded: Loaded, data: bytes, suffix: str, *, chunk_duration: float, overlap: float,
                  max_duration: float) -> tuple[dict, list[tuple[float, float]]]:
    """Decode an upload and score every fAIk window; return (detector result, window bounds in seconds)."""
    det = loaded.for_chunk(chunk_duration)
    sr = det.sample_rate
    wave = decode_upload(data, suffix, sr=sr, max_duration=max_duration)
    if wave.size == 0:
        raise AudioError("upload", "no audio samples; send a non-empty recording")
    bounds = faik_bounds(wave.size, sr, chunk_duration=chunk_duration, overlap=overlap)
    length = window_length(chunk_duration, sr)
    batch = max(1, BATCH_SAMPLES // length)
    parts: dict[str, list[np.ndarray]] = {}
    for first in range(0, len(bounds), batch):
        windows = np.stack([_window(det, wave, s, e, length) for s, e in bounds[first:first + batch]])
        for key, value in det.forward(windows).items():
            parts.setdefault(key, []).append(value)
    logits = {k: np.concatenate(v) for k, v in parts.items()}
    # the detector's own assembly (calibration, decision, heads) over exactly these windows, silence not skipped
    scorer = dataclasses.replace(det, silence_dbfs=-math.inf)
    result = scorer.result("upload", wave.size, bounds, list(range(len(bounds))), logits)
    return result, [(s / sr, e / sr) for s, e in bounds]


def debug_audio(data: bytes, suffix: str, filename: str | None, *, max_duration: float) -> dict:
    """fAIk's POST /audio/debug-audio: the upload's length and its window counts for 16 layouts (no model)."""
    sr = FAIK_RATE
    n = int(decode_upload(data, suffix, sr=sr, max_duration=max_duration).size)
    layouts = {}
    for duration in (1.0, 3.0, 5.0, 10.0):
        for overlap in (0.0, 0.3, 0.5, 0.7):
            length = int(duration * sr)
            step = length - int(overlap * length)
            layouts[f"{duration}s_{int(overlap * 100)}%"] = {
                "chunk_duration": duration, "overlap": overlap, "chunk_samples": length, "step_samples": step,
                "num_chunks": max(1, (n - length) // step + 1), "audio_duration": n / sr, "audio_samples": n}
    return {"filename": filename, "file_size_bytes": len(data), "audio_duration_seconds": n / sr,
            "audio_samples": n, "sample_rate": sr, "chunk_analysis": layouts}


_V1 = {  # pydantic v2 error type -> (v1 message template, v1 type, ctx key), as fAIk's pydantic 1.10 words them
    "missing": ("field required", "value_error.missing", None),
    "greater_than_equal": ("ensure this value is greater than or equal to {}", "value_error.number.not_ge", "ge"),
    "less_than_equal": ("ensure this value is less than or equal to {}", "value_error.number.not_le", "le"),
    "greater_than": ("ensure this value is greater than {}", "value_error.number.not_gt", "gt"),
    "less_than": ("ensure this value is less than {}", "value_error.number.not_lt", "lt"),
    "float_parsing": ("value is not a valid float", "type_error.float", None),
    "float_type": ("value is not a valid float", "type_error.float", None),
}


def v1_error(error: dict) -> dict:
    """One pydantic-v2 validation error in pydantic-v1's form (never echoes the input)."""
    loc = list(error.get("loc", ()))
    template, kind, ctx_key = _V1.get(error.get("type", ""), (None, "value_error", None))
    if template is None:
        return {"loc": loc, "msg": str(error.get("msg", "invalid")).removeprefix("Value error, "), "type": kind}
    ctx = error.get("ctx") or {}
    out = {"loc": loc, "msg": template.format(ctx.get(ctx_key)), "type": kind}
    if ctx_key:
        out["ctx"] = {"limit_value": ctx.get(ctx_key)}
    return out


def validation_body(errors: list[dict]) -> dict:
    """fAIk's 422 envelope (its error_handler.py) around pydantic-v1 errors."""
    return {"message": "Validation error", "error_type": "ValidationError",
            "details": {"errors": [v1_error(e) for e in errors], "body": "<FormData>"}}


def missing_upload() -> dict:
    """The v2-form error of a request without the `audio_file` part."""
    return {"loc": ("body", "audio_file"), "msg": "Field required", "type": "missing"}


def crash_body(exc: Exception) -> dict:
    """fAIk's 500 envelope; the original error is named by type only (no paths, no audio)."""
    return {"message": "Internal server error", "error_type": "InternalServerError",
            "details": {"original_error": type(exc).__name__, "traceback": None}}
