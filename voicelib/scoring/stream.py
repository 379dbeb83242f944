"""Score a file of any length in bounded memory: decode block by block, cut the detector's windows, batch them.

The windows are exactly `detect.chunk_bounds` of the whole file: full windows are cut as soon as the decoded
audio reaches their end, and the partial tail window (whose position needs the total length) once the file
ends. Memory holds one decoded block, one window of history and one batch of windows, whatever the length.
Multi-channel files are mixed down block by block (the whole-file path decides on quiet channels per file).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Iterator

import numpy as np

from voicelib.audio import decode
from voicelib.errors import AudioError

if TYPE_CHECKING:
    from voicelib.scoring.detect import Detector

log = logging.getLogger(__name__)

MIN_DURATION = 0.2  # seconds; the whole-file loader refuses shorter files too
STREAM_BATCH = 24  # windows per forward pass: a batch's activations set the peak (16: -15 MB, 32: +15 MB)


def fix_mmap_threshold(threshold: int = 256 * 1024) -> bool:
    """Make glibc hand buffers above `threshold` bytes straight back to the OS; True when it took effect.

    glibc raises its mmap threshold after large frees, after which every batch's buffers come from a heap
    that only grows: RSS then creeps up by a few MB a batch and peaks anywhere from 450 to 800 MB on one run.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(-3, threshold))  # -3: M_MMAP_THRESHOLD (a fixed value stops the adjustment)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to fix there
        return False


@dataclass
class WindowCutter:
    """Cut a stream of blocks into the windows of `chunk_bounds`; `n_samples` is the length read so far."""

    sr: int
    chunk_duration: float = 3.0
    overlap: float = 0.5
    n_samples: int = 0

    def cut(self, blocks: Iterable[np.ndarray]) -> Iterator[tuple[int, int, np.ndarray]]:
        """Yield (start, end, samples) for each window in order; the samples are a view, copy to keep them."""
        from voicelib.scoring.detect import chunk_bounds

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


def score_stream(detector: "Detector", path: str | os.PathLike, *, chunk_duration: float = 3.0,
                 overlap: float = 0.5, block_seconds: float = 20.0) -> dict:
    """Score one file of any length with `detector`, decoding it block by block; bad audio raises AudioError."""
    from voicelib.scoring.detect import _tile, chunk_bounds

    fix_mmap_threshold()
    sr = detector.sample_rate
    cutter = WindowCutter(sr, chunk_duration=chunk_duration, overlap=overlap)
    length = max(int(round(chunk_duration * sr)), 1)
    floor = 10.0 ** (detector.silence_dbfs / 20.0)
    kept: list[int] = []
    batch: list[np.ndarray] = []
    logits: dict[str, list[np.ndarray]] = {}

    def flush() -> None:
        if batch:
            for key, value in detector._forward(np.stack(batch)).items():
                logits.setdefault(key, []).append(value)
            batch.clear()

    blocks = decode.stream_blocks(path, sr=sr, block_seconds=block_seconds, max_duration=detector.max_duration)
    blocks = (detector.prepared(block) for block in blocks)  # each block prepared as training prepared whole clips
    for i, (_, _, segment) in enumerate(cutter.cut(blocks)):
        if np.sqrt(np.mean(np.square(segment, dtype=np.float64))) >= floor:
            kept.append(i)
            batch.append(_tile(segment, length))
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
    return detector._result(str(path), n, bounds, kept, {k: np.concatenate(v) for k, v in logits.items()})
