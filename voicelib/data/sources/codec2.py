"""Codec2 (8 kHz low-bitrate speech codec) copies of human clips, when Debian `codec2` is installed.

Off by default: its band stops at 4 kHz, so unless the human clips are band-limited the same way the
detector would learn "narrow band means AI".
"""
from __future__ import annotations

import logging
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from voicelib.audio import dsp
from voicelib.config import SAMPLE_RATE
from voicelib.data.sources.command import missing
from voicelib.data.sources.vocode import load_source

log = logging.getLogger(__name__)

FAMILY = "vocoder"
INSTALL = "sudo apt-get install codec2"
MODE = "1600"
TIMEOUT = 60.0


def available() -> tuple[bool, str]:
    """Return (True, "") when c2enc and c2dec are on PATH, else how to install them."""
    if missing(("c2enc", "c2dec")):
        return False, f"codec2 is not installed; {INSTALL}"
    return True, ""


def synthesize(*, source: str, mode: str = MODE, seed: int = 0) -> tuple[np.ndarray, int]:
    """Encode and decode the clip at `source` with Codec2 at 8 kHz; return (float32 wave, 8000)."""
    del seed
    x = dsp.resample(load_source(source).astype(np.float32), SAMPLE_RATE, 8000)
    pcm = (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()
    with tempfile.TemporaryDirectory(prefix="voicelib-c2-") as tmp:
        raw, bits, out = Path(tmp) / "in.raw", Path(tmp) / "x.bit", Path(tmp) / "out.raw"
        raw.write_bytes(pcm)
        for argv in (["c2enc", mode, str(raw), str(bits)], ["c2dec", mode, str(bits), str(out)]):
            done = subprocess.run(argv, capture_output=True, timeout=TIMEOUT, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"codec2: {argv[0]} failed on {source}: rc {done.returncode}")
        y = np.frombuffer(out.read_bytes(), dtype="<i2").astype(np.float32) / np.float32(32768.0)
    return y, 8000
