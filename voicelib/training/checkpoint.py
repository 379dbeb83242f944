"""Training checkpoints and history: the model directory's `checkpoints/last.pt` and `history.csv`, resumable."""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from voicelib.errors import ModelError
from voicelib.files import atomic_path, atomic_write
from voicelib.model.saving import HISTORY, WEIGHTS

logger = logging.getLogger(__name__)

LAST = Path("checkpoints") / "last.pt"
STATE_KEYS = ("best_error", "best_loss", "best_epoch", "bad_epochs")


def prepare_out_dir(out_dir: str | os.PathLike, *, resume: bool) -> Path:
    """Create out_dir; an earlier model there is moved aside (never overwritten) unless resuming."""
    out_dir = Path(out_dir)
    if not resume and out_dir.exists() and any((out_dir / name).exists() for name in (WEIGHTS, LAST)):
        stamp = time.strftime("%Y%m%d-%H%M%S")
        backup, n = out_dir.with_name(f"{out_dir.name}.{stamp}.bak"), 1
        while backup.exists():
            backup, n = out_dir.with_name(f"{out_dir.name}.{stamp}-{n}.bak"), n + 1
        out_dir.rename(backup)
        logger.warning("%s held an earlier model; moved it to %s (resuming the run, or resume_training=True, "
                       "continues it instead)", out_dir, backup)
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def save_last(out_dir: Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int, epoch: int,
              state: dict[str, Any]) -> None:
    """Weights, optimizer, step and early-stopping state, written atomically (tensors and numbers only)."""
    payload = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch, "step": step,
               **{k: state[k] for k in STATE_KEYS}}
    with atomic_path(out_dir / LAST) as tmp:
        torch.save(payload, tmp)


def load_last(out_dir: Path, *, model: torch.nn.Module,
              optimizer: torch.optim.Optimizer) -> tuple[dict[str, Any], int] | None:
    """Restore (early-stopping state with 'epoch', step) from checkpoints/last.pt; None when there is none."""
    path = out_dir / LAST
    if not path.is_file():
        logger.warning("resume=True but %s does not exist; starting from epoch 1", path)
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)  # weights_only: no code runs
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
    except (RuntimeError, KeyError, ValueError) as exc:
        raise ModelError(f"{path}: cannot resume from it ({str(exc).splitlines()[0]}); "
                         "delete it to start afresh") from None
    return {k: payload[k] for k in ("epoch", *STATE_KEYS)}, int(payload["step"])


def write_history(rows: list[dict[str, Any]], out_dir: Path) -> pd.DataFrame:
    """Write history.csv (one row per epoch) atomically and return it."""
    history = pd.DataFrame(rows)
    with atomic_write(out_dir / HISTORY, "w", encoding="utf-8", newline="") as handle:
        history.to_csv(handle, index=False)
    return history


def read_history(out_dir: Path, last_epoch: int) -> list[dict[str, Any]]:
    """The history rows up to `last_epoch` (for resuming)."""
    path = out_dir / HISTORY
    if not path.is_file():
        return []
    frame = pd.read_csv(path)
    return frame[frame["epoch"] <= last_epoch].to_dict(orient="records")
