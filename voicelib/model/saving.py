"""The model directory: safetensors weights and JSON config, written atomically and read without executing code.

A model directory may also hold the network exported to ONNX (written once by voicelib.model.export, read by
ONNX detection): `model.<frames>f.<key>.onnx`, one graph per input length, where the key hashes the weights and
the config's model section, so a changed or replaced weights file never runs a graph exported from the old one.
This module imports no torch at load time (the network is built only by `load_model`), so ONNX detection reads
model directories without it.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voicelib import __version__
from voicelib.errors import ModelError
from voicelib.files import atomic_path, read_json, write_json
from voicelib.languages import LANGUAGE_NAMES
from voicelib.model.config import ModelConfig

if TYPE_CHECKING:
    from torch import nn

logger = logging.getLogger(__name__)


WEIGHTS, CONFIG, METRICS, HISTORY = "model.safetensors", "config.json", "metrics.json", "history.csv"


MODEL_FILES = (WEIGHTS, CONFIG, METRICS, HISTORY)


def save_weights(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write a model's state dict as safetensors, atomically."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    return Path(path)


def save_model(model: nn.Module, model_dir: str | os.PathLike, *, config: dict[str, Any],
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
        raise ModelError(f"{model_dir}: no such model directory; train one with train.fit or pick one with "
                         "`python -m voicelib models list`")
    for name in (WEIGHTS, CONFIG):
        if not (model_dir / name).is_file():
            raise ModelError(f"{model_dir}: {name} is missing; the directory is not a complete model "
                             "(retrain or re-register it)")
    try:
        meta = read_json(model_dir / CONFIG)
        meta["metrics"] = read_json(model_dir / METRICS) if (model_dir / METRICS).is_file() else {}
    except ValueError as exc:
        raise ModelError(str(exc)) from None
    if not isinstance(meta.get("model"), dict):
        raise ModelError(f"{model_dir / CONFIG}: no 'model' section; this is not a voicelib detector config")
    return meta


def load_model(path: str | os.PathLike, *, device: str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a detector from safetensors + config.json (no pickle), in eval mode on `device`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

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
    # the architectures (and torch) load by name, here only: ONNX detection reads model directories without them
    model = importlib.import_module("voicelib.model.registry").build_model(cfg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1:2] or [str(exc)]
        raise ModelError(f"{model_dir}: weights do not match config.json ({first[0].strip()}); "
                         "the files come from different models") from None
    return model.to(device).eval(), meta


def _versions() -> dict[str, str]:
    import platform

    import numpy as np
    import torch  # only a trained model's card asks, and training has torch loaded already

    return {"voicelib": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def model_card(cfg: ModelConfig, *, train_config: dict[str, Any], training: dict[str, Any], data: dict[str, Any],
               language: str, language_head: bool, **extra: Any) -> dict[str, Any]:
    """config.json of a trained model: everything needed to rebuild and use it, how it was trained included."""
    import time

    return {"format": "voicelib-detector", "format_version": 1, "language": language, "model": cfg.to_dict(),
            "features": cfg.features.to_dict(), "sample_rate": cfg.features.sample_rate,
            "segment_seconds": cfg.segment_seconds, "labels": ["human", "ai"], "positive_label": "ai",
            "languages": LANGUAGE_NAMES, "language_head_active": language_head,
            "score": "mean AI logit over segments of segment_seconds (higher = more AI)",
            "threshold_scale": "logit", "train_config": train_config, "training": training, "data": data,
            "versions": _versions(), "created": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra}


def cache_dir() -> Path:
    """Where exported graphs of read-only model directories go: $VOICELIB_CACHE/onnx, else ~/.cache/voicelib/onnx."""
    return Path(os.environ.get("VOICELIB_CACHE") or Path.home() / ".cache" / "voicelib") / "onnx"


def graph_key(model_dir: str | os.PathLike) -> str:
    """What an exported graph must match: SHA-256 (16 hex) of the weights file's bytes and the config's model part."""
    model_dir = Path(model_dir)
    section = json.dumps(read_meta(model_dir)["model"], sort_keys=True).encode()
    digest = hashlib.sha256()
    with open(model_dir / WEIGHTS, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    digest.update(section)
    return digest.hexdigest()[:16]


def graph_name(frames: int | str, key: str) -> str:
    """File name of the ONNX graph for inputs of `frames` frames, exported from the weights and config `key` names."""
    return f"model.{frames}f.{key}.onnx"


def stored_graph(model_dir: str | os.PathLike, frames: int, *, key: str) -> Path | None:
    """The stored ONNX graph of these weights for `frames` frames (beside them, else in the cache), or None.

    A graph of another key beside the weights was exported from other weights or another config: it is
    never used, and a warning says so (the next export replaces it).
    """
    for folder in (Path(model_dir), cache_dir()):
        if (folder / graph_name(frames, key)).is_file():
            return folder / graph_name(frames, key)
    stale = sorted(p.name for p in Path(model_dir).glob(graph_name(frames, "*")))
    if stale:
        logger.warning("%s: %s exported from other weights or another config (expected key %s); exporting again",
                       model_dir, ", ".join(stale), key)
    return None


def stored_graphs(model_dir: str | os.PathLike) -> list[Path]:
    """Every ONNX graph beside the weights that matches them (what store.register copies with a model)."""
    key = graph_key(model_dir)
    return sorted(Path(model_dir).glob(graph_name("*", key)))
