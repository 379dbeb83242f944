"""Model directories and the versioned model store `models/<language>/<timestamp>/`.

A model directory holds `model.safetensors` (weights), `config.json` (everything to rebuild and use the
model: architecture, feature settings, labels, sample rate, threshold, calibration, training parameters,
seed, data summary, versions), `metrics.json` and `history.csv`. Loading reads only safetensors and JSON,
so it never executes code from the files. Store entries are never overwritten: each registration gets a
new timestamped folder, and `current.json` per language records the promoted version and its history.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from voicelib.errors import ModelError
from voicelib.io import atomic_path, read_json, write_json
from voicelib.languages import language_name

logger = logging.getLogger(__name__)

WEIGHTS, CONFIG, METRICS, HISTORY = "model.safetensors", "config.json", "metrics.json", "history.csv"
POINTER = "current.json"
MODEL_FILES = (WEIGHTS, CONFIG, METRICS, HISTORY)
_VERSION = re.compile(r"^\d{8}-\d{6}(-\d+)?$")


def save_weights(model: torch.nn.Module, path: str | os.PathLike) -> Path:
    """Write a model's state dict as safetensors, atomically."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    return Path(path)


def save_model(model: torch.nn.Module, model_dir: str | os.PathLike, *, config: dict[str, Any],
               metrics: dict[str, Any] | None = None) -> Path:
    """Write weights, config (and metrics) into `model_dir`; each file is replaced atomically."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    save_weights(model, model_dir / WEIGHTS)
    write_json(model_dir / CONFIG, config)
    if metrics is not None:
        write_json(model_dir / METRICS, metrics)
    return model_dir


def read_meta(model_dir: str | os.PathLike) -> dict[str, Any]:
    """config.json of a model dir, with metrics.json (if any) under 'metrics'; ModelError when unusable."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelError(f"{model_dir}: no such model directory; train one with train.fit or pick one from store.list_models")
    for name in (WEIGHTS, CONFIG):
        if not (model_dir / name).is_file():
            raise ModelError(f"{model_dir}: {name} is missing; the directory is not a complete model (retrain or re-register it)")
    try:
        meta = read_json(model_dir / CONFIG)
        meta["metrics"] = read_json(model_dir / METRICS) if (model_dir / METRICS).is_file() else {}
    except ValueError as exc:
        raise ModelError(str(exc)) from None
    if not isinstance(meta.get("model"), dict):
        raise ModelError(f"{model_dir / CONFIG}: no 'model' section; this is not a voicelib detector config")
    return meta


def load_model(path: str | os.PathLike, *, device: str = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild a detector from safetensors + config.json (no pickle), in eval mode on `device`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from voicelib.model import ModelConfig, build_model

    model_dir = Path(path)
    meta = read_meta(model_dir)
    try:
        cfg = ModelConfig.from_dict(meta["model"])
    except (ValueError, TypeError) as exc:
        raise ModelError(f"{model_dir / CONFIG}: model section unusable ({exc}); re-export the model") from None
    try:
        state = load_file(str(model_dir / WEIGHTS), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"{model_dir / WEIGHTS}: corrupt weights file ({exc}); retrain or restore the model") from None
    model = build_model(cfg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1:2] or [str(exc)]
        raise ModelError(f"{model_dir}: weights do not match config.json ({first[0].strip()}); the files come from different models") from None
    return model.to(device).eval(), meta


def _language_dir(root: str | os.PathLike, language: str) -> Path:
    return Path(root) / language_name(language)


def _new_version(language_dir: Path) -> Path:
    """A fresh, unused <YYYYmmdd-HHMMSS[-n]> folder name."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate, n = language_dir / stamp, 1
    while candidate.exists():
        candidate, n = language_dir / f"{stamp}-{n}", n + 1
    return candidate


def list_models(root: str | os.PathLike, language: str) -> list[str]:
    """Registered versions of a language, oldest first."""
    language_dir = _language_dir(root, language)
    if not language_dir.is_dir():
        return []
    return sorted(p.name for p in language_dir.iterdir() if p.is_dir() and _VERSION.match(p.name))


def _pointer(root: str | os.PathLike, language: str) -> dict[str, Any]:
    path = _language_dir(root, language) / POINTER
    return read_json(path) if path.is_file() else {"current": None, "history": []}


def register(model_dir: str | os.PathLike, *, root: str | os.PathLike, language: str, promote: bool = True) -> Path:
    """Copy a model dir into root/<language>/<timestamp>/ (never overwriting) and optionally promote it."""
    read_meta(model_dir)  # refuse incomplete or foreign directories before copying anything
    language_dir = _language_dir(root, language)
    language_dir.mkdir(parents=True, exist_ok=True)
    target = _new_version(language_dir)
    staging = language_dir / f".{target.name}.tmp"
    staging.mkdir()
    for name in MODEL_FILES:
        if (Path(model_dir) / name).is_file():
            shutil.copy2(Path(model_dir) / name, staging / name)
    os.rename(staging, target)  # the entry appears complete or not at all
    logger.info("registered %s as %s", model_dir, target)
    if promote:
        _promote(root, language, target.name)
    return target


def promote(root: str | os.PathLike, language: str, version: str) -> Path:
    """Make `version` the current model of `language`; the previous one stays in the history."""
    if version not in list_models(root, language):
        raise ModelError(f"{_language_dir(root, language)}: no version {version!r}; choose one of {list_models(root, language)}")
    state = _pointer(root, language)
    history = [v for v in state.get("history", []) if v in list_models(root, language)]
    if not history or history[-1] != version:
        history.append(version)
    write_json(_language_dir(root, language) / POINTER, {"current": version, "history": history,
                                                           "updated": time.strftime("%Y-%m-%dT%H:%M:%S")})
    logger.info("%s: current model is now %s", language, version)
    return _language_dir(root, language) / version


_promote = promote  # register() takes a `promote` flag that shadows the function's name


def rollback(root: str | os.PathLike, language: str) -> Path:
    """Return to the previously promoted version of `language`."""
    state = _pointer(root, language)
    history = list(state.get("history", []))
    if len(history) < 2:
        raise ModelError(f"{_language_dir(root, language)}: nothing to roll back to (promotion history {history})")
    history.pop()
    write_json(_language_dir(root, language) / POINTER, {"current": history[-1], "history": history,
                                                           "updated": time.strftime("%Y-%m-%dT%H:%M:%S")})
    logger.info("%s: rolled back to %s", language, history[-1])
    return _language_dir(root, language) / history[-1]


def current(language: str, *, root: str | os.PathLike = "models") -> Path:
    """The folder of the promoted model of `language`; ModelError when none is promoted."""
    version = _pointer(root, language).get("current")
    if not version or not (_language_dir(root, language) / version).is_dir():
        raise ModelError(f"{_language_dir(root, language)}: no current model; train one and store.register(..., promote=True)")
    return _language_dir(root, language) / version
