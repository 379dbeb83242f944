"""Mel-cepstral analysis and MLSA-filter resynthesis of human clips (`pysptk`): the classic HTS vocoder."""
from __future__ import annotations

import importlib.resources
import importlib.util
import logging
import sys
import types
import warnings

import numpy as np

from voicelib.config import SAMPLE_RATE
from voicelib.data.sources.vocode import load_source

log = logging.getLogger(__name__)

FAMILY = "vocoder"
INSTALL = "pip install pysptk==1.0.1"
ORDER, ALPHA = 24, 0.42  # mel-cepstrum order and all-pass constant for 16 kHz
FRAME, HOP = 1024, 80


def _pysptk():
    """Import pysptk; its util module imports pkg_resources (gone from setuptools>=81) for one example-file path."""
    if "pkg_resources" not in sys.modules and importlib.util.find_spec("pkg_resources") is None:
        shim = types.ModuleType("pkg_resources")
        shim.resource_filename = lambda package, name: str(importlib.resources.files(package) / name)
        sys.modules["pkg_resources"] = shim  # pysptk uses only resource_filename, for its example audio file
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pysptk
        import pysptk.synthesis
    return pysptk


def available() -> tuple[bool, str]:
    """Return (True, "") when pysptk imports, else (False, how to install it)."""
    if importlib.util.find_spec("pysptk") is None:
        return False, f"pysptk is not installed; {INSTALL}"
    try:
        _pysptk()
    except ImportError as exc:
        return False, f"pysptk does not import ({exc}); {INSTALL}"
    return True, ""


def resynthesize(x: np.ndarray, sr: int, *, seed: int = 0) -> np.ndarray:
    """Mel-cepstrum per frame plus a SWIPE pulse/noise excitation through the MLSA filter."""
    pysptk = _pysptk()
    from pysptk.synthesis import MLSADF, Synthesizer

    x = np.ascontiguousarray(x, dtype=np.float64)
    x = x + 1e-6 * np.random.default_rng(seed).standard_normal(len(x))  # no log(0) on digital silence
    pitch = pysptk.swipe(x, fs=sr, hopsize=HOP, min=60, max=400, otype="pitch")
    padded = np.pad(x, FRAME // 2)
    count = 1 + (len(padded) - FRAME) // HOP
    index = np.arange(FRAME)[None, :] + HOP * np.arange(count)[:, None]
    frames = padded[index] * pysptk.blackman(FRAME)
    mc = pysptk.mcep(frames, ORDER, ALPHA, etype=1, eps=1e-8)
    n = min(len(pitch), len(mc))
    excitation = pysptk.excite(np.ascontiguousarray(pitch[:n]), HOP, gaussian=True, seed=seed + 1)
    b = pysptk.mc2b(mc[:n], ALPHA)
    y = Synthesizer(MLSADF(order=ORDER, alpha=ALPHA), HOP).synthesis(excitation, b)
    y = y[: len(x)]
    peak = np.max(np.abs(y)) if len(y) else 0.0
    target = np.max(np.abs(x))
    return y * (target / peak) if peak > 0 else y  # the filter gain drifts: keep the source's peak level


def synthesize(*, source: str, seed: int = 0) -> tuple[np.ndarray, int]:
    """MLSA-vocoded copy of the clip at `source`; return (float32 wave, 16000)."""
    y = resynthesize(load_source(source), SAMPLE_RATE, seed=seed)
    return np.clip(y, -1.0, 1.0).astype(np.float32), SAMPLE_RATE
