"""Engines run as external programs (Festival's text2wave, flite): find them, run one with a timeout, read its wav."""
from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from voicelib.errors import SourceUnavailable

log = logging.getLogger(__name__)


def missing(programs: tuple[str, ...], files: tuple[str, ...] = ()) -> list[str]:
    """The programs not on PATH and the files (e.g. a voice's data) not on disk."""
    return [p for p in programs if shutil.which(p) is None] + [f for f in files if not Path(f).exists()]


def run_to_wave(args: list[str], *, text: str, timeout: float = 60.0, name: str) -> tuple[np.ndarray, int]:
    """Run `args` with {text} and {out} placeholders (text goes in a UTF-8 file); return the wav it wrote."""
    with tempfile.TemporaryDirectory(prefix="voicelib-") as tmp:
        text_file, out = Path(tmp) / "text.txt", Path(tmp) / "out.wav"
        text_file.write_text(text + "\n", encoding="utf-8")
        argv = [a.replace("{text}", str(text_file)).replace("{out}", str(out)) for a in args]
        try:
            done = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
        except FileNotFoundError as exc:
            raise SourceUnavailable(f"{name}: {argv[0]} not found ({exc})") from exc
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"{name}: {argv[0]} took over {timeout:g} s on {text[:40]!r}") from exc
        if done.returncode != 0 or not out.is_file() or out.stat().st_size <= 44:
            err = done.stderr.decode("utf-8", errors="replace").strip().splitlines()[-1:] or [f"rc {done.returncode}"]
            raise RuntimeError(f"{name}: {argv[0]} failed on {text[:40]!r}: {err[0]}")
        wave, sr = sf.read(out, dtype="float32", always_2d=True)
    return wave.mean(axis=1), int(sr)
