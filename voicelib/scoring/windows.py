"""Scoring windows: where each window of a file lies, how a short one is filled, and cutting them from a stream.

Windows of `chunk_duration` seconds every `chunk_duration * (1 - overlap)` seconds. When the last full window
stops short of the end, one more (partial) window covers the tail, so every sample is scored; a file shorter
than one window is one partial window. Partial windows are tiled (the audio is repeated) up to the window
length rather than zero-padded, because runs of exact digital zeros are a known source cue. Windows whose
RMS is below the silence floor are skipped.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np


def chunk_bounds(n_samples: int, sr: int, *, chunk_duration: float = 3.0,
                 overlap: float = 0.5) -> list[tuple[int, int]]:
    """Return (start, end) sample indices of the scoring windows; the last one may be partial."""
    if chunk_duration <= 0:
        raise ValueError(f"chunk_duration must be positive, got {chunk_duration}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    length = max(int(round(chunk_duration * sr)), 1)
    hop = max(int(round(length * (1.0 - overlap))), 1)
    if n_samples <= length:
        return [(0, n_samples)]
    bounds = [(s, s + length) for s in range(0, n_samples - length + 1, hop)]
    if bounds[-1][1] < n_samples:
        start = bounds[-1][0] + hop
        bounds.append((start, n_samples))
    return bounds


def tile(segment: np.ndarray, length: int) -> np.ndarray:
    """Repeat a short segment until it fills `length` samples."""
    if segment.size >= length:
        return segment[:length]
    return np.resize(segment, length)


def window_length(chunk_duration: float, sr: int) -> int:
    """Samples in one window of `chunk_duration` seconds."""
    return max(int(round(chunk_duration * sr)), 1)


def is_loud(segment: np.ndarray, floor: float) -> bool:
    """Whether a window's RMS reaches `floor` (linear amplitude); quieter windows are skipped as silent."""
    return bool(np.sqrt(np.mean(np.square(segment, dtype=np.float64))) >= floor)


@dataclass
class WindowCutter:
    """Cut a stream of blocks into the windows of `chunk_bounds`; `n_samples` is the length read so far."""

    sr: int
    chunk_duration: float = 3.0
    overlap: float = 0.5
    n_samples: int = 0

    def cut(self, blocks: Iterable[np.ndarray]) -> Iterator[tuple[int, int, np.ndarray]]:
        """Yield (start, end, samples) for each window in order; the samples are a view, copy to keep them."""
        length = max(int(round(self.chunk_duration * self.sr)), 1)
        hop = max(int(round(length * (1.0 - self.overlap))), 1)
        buf, buf_start, next_start, emitted = np.zeros(0, np.float32), 0, 0, 0
        for block in blocks:
            buf = np.concatenate([buf, np.asarray(block, dtype=np.float32)])
            self.n_samples += len(block)
            while next_start + length <= buf_start + buf.size:
                offset = next_start - buf_start
                yield next_start, next_start + length, buf[offset:offset + length]
                emitted, next_start = emitted + 1, next_start + hop
            drop = min(next_start - buf_start, buf.size)
            buf, buf_start = buf[drop:], buf_start + drop
        if self.n_samples == 0:
            return
        for start, end in chunk_bounds(self.n_samples, self.sr, chunk_duration=self.chunk_duration,
                                       overlap=self.overlap)[emitted:]:
            yield start, end, buf[start - buf_start:end - buf_start]
