"""Decoded, resampled audio kept as memory-mapped float32 arrays keyed by content hash.

Epochs after the first read the cache instead of decoding files again, so an epoch's time is spent
in the network. The key is the file's content hash (the manifest's `hash` column), so a renamed file
is still found and an edited file is decoded afresh.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable

import numpy as np
from tqdm.auto import tqdm

from voicelib.audio import decode
from voicelib.audio.preprocess import prepare
from voicelib.config import SAMPLE_RATE
from voicelib.files import atomic_path, file_hash

logger = logging.getLogger(__name__)


class AudioCache:
    """Decode each file once to <root>/<sr>[-<prep>]/<hash>.f32 and hand out read-only memory maps.

    With a `preprocess` config (voicelib.audio.preprocess) the cached wave is the prepared one (silence trimmed,
    level normalised, zeros dithered), under a folder named by that config's hash.
    """

    def __init__(self, root: str | os.PathLike, sr: int = SAMPLE_RATE, *, preprocess=None):
        if int(sr) <= 0:
            raise ValueError(f"AudioCache: sample rate {sr} must be positive")
        self.root = Path(root)
        self.sr = int(sr)
        self.preprocess = preprocess if preprocess is not None and preprocess.active else None
        suffix = f"-{preprocess.key}" if self.preprocess is not None else ""
        self.dir = self.root / f"{self.sr}{suffix}"
        self.decoded = 0  # files decoded by this instance (in this process): the cost the cache saves

    def path_for(self, hash: str) -> Path:
        """Where the array of a clip with this content hash lives."""
        return self.dir / f"{hash}.f32"

    def get(self, path: str | os.PathLike, hash: str | None = None) -> np.ndarray:
        """The clip at `path` as float32 mono at the cache's rate (a read-only memmap)."""
        key = str(hash) if hash is not None and str(hash) not in ("", "nan", "None") else file_hash(path)
        target = self.path_for(key)
        if not target.exists():
            wave = decode.load(path, sr=self.sr)
            if self.preprocess is not None:

                wave = prepare(wave, self.sr, self.preprocess)
            self.decoded += 1
            self.dir.mkdir(parents=True, exist_ok=True)
            with atomic_path(target) as tmp:
                np.ascontiguousarray(wave, dtype=np.float32).tofile(tmp)
        return np.memmap(target, dtype=np.float32, mode="r")

    def warm(self, items: Iterable[tuple[str, str | None]], *, progress: bool = True) -> int:
        """Decode every (path, hash) not yet cached; return how many were decoded."""
        items = list(items)
        before = self.decoded
        for path, key in tqdm(items, desc="decode cache", disable=not progress, leave=False):
            self.get(path, key)
        logger.info("audio cache %s: %d of %d clips decoded, rest already cached", self.dir, self.decoded - before,
                    len(items))
        return self.decoded - before

    def size_bytes(self) -> int:
        """Total size of the cached arrays."""
        return sum(p.stat().st_size for p in self.dir.glob("*.f32")) if self.dir.exists() else 0
