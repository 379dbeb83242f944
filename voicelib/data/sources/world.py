"""WORLD analysis-resynthesis of human clips (`pyworld-prebuilt`): harvest, dio, and a coded-envelope variant."""
from __future__ import annotations

import importlib.util
import logging

import numpy as np

from voicelib.config import SAMPLE_RATE
from voicelib.data.sources.vocode import load_source

log = logging.getLogger(__name__)

FAMILY = "vocoder"
INSTALL = "pip install pyworld-prebuilt==0.3.6.post1"
VARIANTS = {"world-harvest": "harvest", "world-dio": "dio", "world-coded": "coded"}
CODED_DIMS = 40  # coded spectral envelope dimensions: coarser, more vocoder-like


def available() -> tuple[bool, str]:
    """Return (True, "") when pyworld imports, else (False, how to install it)."""
    if importlib.util.find_spec("pyworld") is None:
        return False, f"pyworld is not installed; {INSTALL}"
    return True, ""


def resynthesize(x: np.ndarray, sr: int, *, variant: str = "harvest") -> np.ndarray:
    """Analyse a float64 wave with WORLD (f0, envelope, aperiodicity) and synthesise it back."""
    import pyworld as pw

    if variant not in VARIANTS.values():
        raise ValueError(f"world: unknown variant {variant!r}; choose from {', '.join(VARIANTS.values())}")
    x = np.ascontiguousarray(x, dtype=np.float64)
    if variant == "harvest":
        f0, t = pw.harvest(x, sr, frame_period=5.0)
    else:
        f0, t = pw.dio(x, sr, frame_period=5.0)
        f0 = pw.stonemask(x, f0, t, sr)
    sp = pw.cheaptrick(x, f0, t, sr)
    ap = pw.d4c(x, f0, t, sr)
    if variant == "coded":
        fft_size = pw.get_cheaptrick_fft_size(sr)
        sp = pw.decode_spectral_envelope(pw.code_spectral_envelope(sp, sr, CODED_DIMS), sr, fft_size)
        ap = pw.decode_aperiodicity(pw.code_aperiodicity(ap, sr), sr, fft_size)
    return pw.synthesize(f0, sp, ap, sr, frame_period=5.0)[: len(x)]


def synthesize(*, source: str, variant: str = "harvest", seed: int = 0) -> tuple[np.ndarray, int]:
    """Vocoded copy of the clip at `source`; return (float32 wave, 16000). Deterministic."""
    del seed
    y = resynthesize(load_source(source), SAMPLE_RATE, variant=variant)
    return np.clip(y, -1.0, 1.0).astype(np.float32), SAMPLE_RATE
