"""The one loader: a model directory, a fused directory or ensemble, or the store's current model of a language."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from voicelib.errors import ModelError
from voicelib.model import store
from voicelib.scoring import fusion
from voicelib.scoring.detector import Detector

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str) -> str:
    """"auto" -> cuda when a GPU is visible, else cpu; refuse a device this machine cannot use, with one line."""
    if device.split(":")[0] not in DEVICES:
        raise ValueError(f"device {device!r} unknown; use one of {', '.join(DEVICES)}")
    if device.startswith("cpu"):
        return device
    import torch  # only "auto" and "cuda" ask torch about GPUs: a CPU run never imports it (1.3 s, 200 MB)

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        raise ModelError(f"device {device!r} requested but no CUDA GPU is available; use device='cpu'")
    return device


def load_detector(model_dir: str | os.PathLike | None = None, *, language: str | None = None,
                  models_root: str | os.PathLike = "models", device: str = "cpu", band: float | None = None,
                  backend: str = "auto", max_duration: float | None = None) -> Detector | fusion.FusedDetector:
    """Load a model directory (fused ones as one model) or the current model of `language`; ModelError if unusable.

    backend "auto" runs the network in onnxruntime on CPU when it is installed, else in torch;
    max_duration (seconds) refuses longer files, None scores any length.
    """
    if max_duration is not None and max_duration <= 0:
        raise ValueError(f"max_duration must be positive seconds or None, got {max_duration}")
    if (model_dir is None) == (language is None):
        raise ValueError("load_detector: give either a model directory or a language, not both or neither")
    device = resolve_device(device)
    if model_dir is None:
        model_dir = store.current(language, root=models_root)
    if not Path(model_dir).is_dir():
        raise ModelError(f"{model_dir}: no such model directory; "
                         "pass a folder holding model.safetensors and config.json")
    options = {"device": device, "band": band, "backend": backend, "max_duration": max_duration}
    if fusion.fused_file(model_dir) is not None:
        return fusion.FusedDetector.load(model_dir, **options)
    return Detector.load(model_dir, **options)


def load_ensemble(model_dirs: Sequence[str | os.PathLike], *, device: str = "cpu", band: float | None = None,
                  backend: str = "auto", max_duration: float | None = None) -> Detector | fusion.FusedDetector:
    """One model directory as it is, several as the unfitted mean ensemble (`detect --model A --model B`)."""
    if len(model_dirs) == 1:
        return load_detector(model_dirs[0], device=device, band=band, backend=backend, max_duration=max_duration)
    for d in model_dirs:
        if not Path(d).is_dir():
            raise ModelError(f"{d}: no such model directory; pass folders holding model.safetensors and config.json")
    return fusion.ensemble(model_dirs, device=resolve_device(device), band=band, backend=backend,
                           max_duration=max_duration)
