"""A stand-in engine for tests/test_dask.py: a tone per job, and a job that kills its own worker process once."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def synthesize(*, freq: float, kill_flag: str = "", seconds: float = 1.0) -> tuple[np.ndarray, int]:
    """A tone of `freq` Hz; with `kill_flag` not yet there: create it and end this process abruptly (no cleanup)."""
    if kill_flag and not Path(kill_flag).exists():
        Path(kill_flag).write_text(str(os.getpid()), encoding="utf-8")
        os._exit(1)
    t = np.arange(int(16000 * seconds)) / 16000
    return (0.2 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 16000
