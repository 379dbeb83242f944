"""Score a file of any length in bounded memory: decode block by block, cut the detector's windows, batch them.

The windows are exactly `windows.chunk_bounds` of the whole file: full windows are cut as soon as the decoded
audio reaches their end, and the partial tail window (whose position needs the total length) once the file
ends. Memory holds one decoded block, one window of history and one batch of windows, whatever the length.
Multi-channel files are mixed down block by block (the whole-file path decides on quiet channels per file).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from typing import Protocol

import numpy as np

from voicelib.audio import decode
from voicelib.errors import AudioError
from voicelib.scoring.windows import WindowCutter, chunk_bounds, is_loud, tile, window_length

log = logging.getLogger(__name__)

MIN_DURATION = 0.2  # seconds; the whole-file loader refuses shorter files too
STREAM_BATCH = 24  # windows per forward pass: a batch's activations set the peak (16: -15 MB, 32: +15 MB)


def fix_mmap_threshold(threshold: int = 256 * 1024) -> bool:
    """Make glibc hand buffers above `threshold` bytes straight back to the OS; True when it took effect.

    glibc raises its mmap threshold after large frees, after which every batch's buffers come from a heap
    that only grows: RSS then creeps up by a few MB a batch and peaks anywhere from 450 to 800 MB on one run.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(-3, threshold))  # -3: M_MMAP_THRESHOLD (a fixed value stops the adjustment)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to fix there
        return False


class WindowScorer(Protocol):
    """What streaming needs of a detector (voicelib.scoring.detector.Detector is one)."""

    sample_rate: int
    silence_dbfs: float
    batch_size: int
    max_duration: float | None

    def prepared(self, wave: np.ndarray) -> np.ndarray: ...
    def forward(self, chunks: np.ndarray) -> dict[str, np.ndarray]: ...
    def result(self, name: str, n: int, bounds, kept, logits: dict[str, np.ndarray]) -> dict: ...


def score_stream(detector: WindowScorer, path: str | os.PathLike, *, chunk_duration: float = 3.0,
                 overlap: float = 0.5, block_seconds: float = 20.0) -> dict:
    """Score one file of any length with `detector`, decoding it block by block; bad audio raises AudioError."""
    fix_mmap_threshold()
    sr = detector.sample_rate
    cutter = WindowCutter(sr, chunk_duration=chunk_duration, overlap=overlap)
    length = window_length(chunk_duration, sr)
    floor = 10.0 ** (detector.silence_dbfs / 20.0)
    kept: list[int] = []
    batch: list[np.ndarray] = []
    logits: dict[str, list[np.ndarray]] = {}

    def flush() -> None:
        if batch:
            for key, value in detector.forward(np.stack(batch)).items():
                logits.setdefault(key, []).append(value)
            batch.clear()

    blocks = decode.stream_blocks(path, sr=sr, block_seconds=block_seconds, max_duration=detector.max_duration)
    blocks = (detector.prepared(block) for block in blocks)  # each block prepared as training prepared whole clips
    for i, (_, _, segment) in enumerate(cutter.cut(blocks)):
        if is_loud(segment, floor):
            kept.append(i)
            batch.append(tile(segment, length))
            if len(batch) >= min(detector.batch_size, STREAM_BATCH):
                flush()
    flush()
    n = cutter.n_samples
    if n == 0:
        raise AudioError(path, "no audio samples in the file; re-record or re-export it")
    if n / sr < MIN_DURATION:
        raise AudioError(path, f"{n / sr:.2f} s long, shorter than min_duration={MIN_DURATION:g} s; use a longer clip")
    if not kept:
        raise AudioError(path, f"silent: every chunk is below {detector.silence_dbfs:g} dBFS; nothing to score")
    bounds = chunk_bounds(n, sr, chunk_duration=chunk_duration, overlap=overlap)
    log.info("%s: streamed %.1f s in %d windows", path, n / sr, len(bounds))
    return detector.result(str(path), n, bounds, kept, {k: np.concatenate(v) for k, v in logits.items()})
