"""The versioned model store `models/<language>/<timestamp>/`: register, current, promote, rollback, list.

Each entry is a model directory (voicelib.model owns its files and loading). Entries are never
overwritten: each registration gets a new timestamped folder, and `current.json` per language records
the promoted version and its history.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from voicelib.errors import ModelError
from voicelib.files import read_json, write_json
from voicelib.languages import language_name
from voicelib.model.saving import MODEL_FILES, read_meta, stored_graphs

logger = logging.getLogger(__name__)

ENSEMBLE = "ensemble.json"  # a mean ensemble (voicelib.scoring.fusion.ENSEMBLE_FILE; scoring sits above the store)

POINTER = "current.json"
_VERSION = re.compile(r"^\d{8}-\d{6}(-\d+)?$")


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
    """Copy a model dir into root/<language>/<timestamp>/ (never overwriting) and optionally promote it.

    An ensemble directory (ensemble.json with its members inside it, as the cross-fitted final stage writes) is
    copied whole, its members checked first.
    """
    ensemble = Path(model_dir) / ENSEMBLE
    members = _ensemble_members(model_dir) if ensemble.is_file() else [Path(model_dir)]
    for member in members:
        read_meta(member)  # refuse incomplete or foreign directories before copying anything
    language_dir = _language_dir(root, language)
    language_dir.mkdir(parents=True, exist_ok=True)
    target = _new_version(language_dir)
    staging = language_dir / f".{target.name}.tmp"
    if ensemble.is_file():
        shutil.copytree(model_dir, staging, ignore=shutil.ignore_patterns("checkpoints", "cache"))
    else:
        staging.mkdir()
        _copy_model(Path(model_dir), staging)
    os.rename(staging, target)  # the entry appears complete or not at all
    logger.info("registered %s as %s", model_dir, target)
    if promote:
        _promote(root, language, target.name)
    return target


def _copy_model(model_dir: Path, staging: Path) -> None:
    for name in MODEL_FILES:
        if (model_dir / name).is_file():
            shutil.copy2(model_dir / name, staging / name)
    for graph in stored_graphs(model_dir):  # exported from these weights already: the entry need not export again
        shutil.copy2(graph, staging / graph.name)


def _ensemble_members(model_dir: str | os.PathLike) -> list[Path]:
    """The member directories an ensemble.json names; ModelError unless each lies inside the ensemble directory."""
    root = Path(model_dir).resolve()
    members = [(root / m["path"]).resolve() for m in read_json(root / ENSEMBLE).get("members", [])]
    outside = [str(m) for m in members if not m.is_relative_to(root)]
    if not members or outside:
        raise ModelError(f"{root / ENSEMBLE}: only an ensemble whose members lie inside its directory can be "
                         f"registered ({', '.join(outside) or 'no members'}); build it with its members inside")
    return members


def promote(root: str | os.PathLike, language: str, version: str) -> Path:
    """Make `version` the current model of `language`; the previous one stays in the history."""
    if version not in list_models(root, language):
        raise ModelError(f"{_language_dir(root, language)}: no version {version!r}; "
                         f"choose one of {list_models(root, language)}")
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
        raise ModelError(f"{_language_dir(root, language)}: no current model; "
                         "train one and store.register(..., promote=True)")
    return _language_dir(root, language) / version
