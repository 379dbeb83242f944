"""Train or fine-tune the detector: checkpoints, early stopping on validation EER, history, calibration.

Modes: "scratch" (new network), "full" (all weights from `base_model`), "frozen" (backbone of `base_model`
frozen, all heads train), "head" (only the AI head trains). `base_model` may come from another language
(English -> Hindi transfer). Model selection and early stopping use the validation EER of clip scores
(mean AI logit over segments), never training accuracy; the operating threshold and a Platt calibration
are fitted on the validation scores of the best epoch and written into the model directory.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from voicelib.audio.augment import AugmentConfig, Augmenter
from voicelib.audio.cache import AudioCache
from voicelib.audio.features import frontend
from voicelib.data import dataset as segments
from voicelib.data.manifest import family_of
from voicelib.errors import DataError
from voicelib.metrics import calibrate
from voicelib.model import saving
from voicelib.model.config import OCSOFTMAX, ModelConfig
from voicelib.model.registry import build_model
from voicelib.model.resnet import ResNet18Detector
from voicelib.model.saving import WEIGHTS, load_model, save_model
from voicelib.training import checkpoint, ddp
from voicelib.training.config import REQUIRED_COLUMNS, TrainConfig, TrainResult
from voicelib.training.losses import OCSoftmax
from voicelib.training.sam import SAM
from voicelib.training.steps import Run, epoch_loader, improved, selection_error, set_trainable, train_epoch, validate

logger = logging.getLogger(__name__)


def check_splits(manifest: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The train and val rows; DataError unless both hold human and AI clips."""
    missing = [c for c in REQUIRED_COLUMNS if c not in manifest.columns]
    if missing:
        raise DataError(f"manifest: missing columns {missing}; build it with manifest.assign_splits / read_manifest")
    parts = {}
    for split in ("train", "val"):
        part = manifest[manifest["split"] == split].reset_index(drop=True)
        counts = part["label"].value_counts()
        lacking = [label for label in ("human", "ai") if counts.get(label, 0) == 0]
        if lacking:
            raise DataError(f"manifest: the {split} split has no {' or '.join(lacking)} clips ({dict(counts)}); "
                            "both classes are needed to train and to measure validation EER - collect more "
                            "clips of that class or lower the test fraction in manifest.assign_splits")
        parts[split] = part
    return parts["train"], parts["val"]


def resolve_device(device: str) -> torch.device:
    """'auto' -> cuda when available, else cpu."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use device='cpu' or 'auto'")
    return torch.device(device)


def prepare_model(cfg: TrainConfig, model_config: ModelConfig | None) -> tuple[ResNet18Detector, dict[str, Any]]:
    """Build (scratch) or load (fine-tune) the network and freeze what `cfg.mode` says."""
    if cfg.mode == "scratch":
        return build_model(model_config or ModelConfig(), seed=cfg.seed), {}
    model, meta = load_model(cfg.base_model, device="cpu")
    if model_config is not None and model_config.to_dict() != model.cfg.to_dict():
        logger.warning("fine-tuning keeps the base model's architecture and features; model_config ignored")
    set_trainable(model, cfg.mode)
    return model, {"base_language": meta.get("language")}


def with_families(model_config: ModelConfig | None, train_df: pd.DataFrame) -> ModelConfig | None:
    """The config with the family head's classes filled from the training AI clips (off with fewer than 2)."""
    if model_config is None or not model_config.family_head or model_config.families:
        return model_config

    ai = train_df[train_df["label"] == "ai"]
    families = sorted(set(family_of(ai)) - {"", "unknown"})
    if len(families) < 2:
        logger.warning("family head off: the training AI clips come from %d family (%s); it needs 2 or more",
                       len(families), ", ".join(families) or "none")
        return dataclasses.replace(model_config, family_head=False)
    return dataclasses.replace(model_config, families=tuple(families))


def fit(manifest: pd.DataFrame, config: TrainConfig | None = None, *, out_dir: str | os.PathLike,
        model_config: ModelConfig | None = None, augment_config: AugmentConfig | None = None, device: str = "auto",
        cache_dir: str | os.PathLike | None = None, resume: bool = False, progress: bool = True,
        on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None) -> TrainResult:
    """Train (or fine-tune) on the manifest's train split, select on its val split; write a model dir."""
    cfg = config or TrainConfig()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    train_df, val_df = check_splits(manifest)
    ctx, dev = ddp.setup(resolve_device(device))  # alone: rank 0 of 1; under torchrun: DDP
    progress = progress and ctx.main
    out_dir = checkpoint.prepare_out_dir(out_dir, resume=resume) if ctx.main else Path(out_dir)
    ddp.barrier(ctx)
    model, base_info = prepare_model(cfg, with_families(model_config, train_df))
    mcfg = model.cfg
    cache = AudioCache(cache_dir or out_dir / "cache", mcfg.features.sample_rate, preprocess=mcfg.preprocess)
    both = pd.concat([train_df, val_df])
    keys = list(zip(both["path"], both["hash"] if "hash" in both else [None] * len(both)))
    ddp.main_first(ctx, lambda: cache.warm(keys, progress=progress))  # rank 0 fills it, the others read
    aug = augment_config if augment_config is not None else AugmentConfig()
    language_head = train_df["language"].nunique() >= 2 and cfg.mode != "head"
    weights = {"ai": 1.0, "language": cfg.language_weight if language_head else 0.0,
               "multi": cfg.multi_weight if cfg.mode != "head" else 0.0,
               "family": cfg.family_weight if mcfg.families and cfg.mode != "head" else 0.0}
    train_ds = segments.SegmentDataset(train_df, cache, segment_seconds=mcfg.segment_seconds, train=True,
                                   augmenter=Augmenter(aug), mix_prob=cfg.mix_prob if weights["multi"] else 0.0,
                                   language_head=language_head, seed=cfg.seed,
                                   families=mcfg.families if weights["family"] else None)
    val_ds = segments.SegmentDataset(val_df, cache, segment_seconds=mcfg.segment_seconds, train=False)
    n_samples = cfg.segments_per_epoch or segments.segments_per_epoch(train_df, mcfg.segment_seconds)
    steps = max(n_samples // cfg.batch_size, 1) * cfg.epochs
    model.to(dev)
    optimizer, ai_loss = _optimizer(model, cfg), (OCSoftmax(mcfg.embedding_dim, **OCSOFTMAX)
                                                   if mcfg.ai_head == "ocsoftmax" else None)
    run = Run(model, frontend(mcfg.features).to(dev), optimizer, dev, cfg.mode, cfg.seed, cfg.lr, steps,
               max(int(cfg.warmup_fraction * steps), 1), weights, aug.spec_augment, ai_loss=ai_loss, sam=bool(cfg.sam),
               net=ddp.wrap(model, ctx, dev), ctx=ctx)
    derived = {**base_info, "device": str(dev), "amp": dev.type == "cuda", "loss_weights": weights, "ranks": ctx.world,
               "segments_per_epoch": n_samples, "augment": aug.to_dict()}
    language = str(train_df["language"].mode().iloc[0])
    summary = segments.data_summary(train_df, val_df)

    def make_config(**extra: Any) -> dict[str, Any]:
        return saving.model_card(run.model.cfg, train_config=cfg.to_dict(), training=derived, data=summary,
                                 language=language, language_head=language_head, **extra)

    state = {"epoch": 0, "best_error": float("inf"), "best_loss": float("inf"), "best_epoch": 0, "bad_epochs": 0}
    restored = checkpoint.load_last(out_dir, model=run.model, optimizer=run.optimizer) if resume else None
    if restored:
        state, run.step = restored
    rows = checkpoint.read_history(out_dir, state["epoch"]) if resume else []
    stopped = _loop(run, cfg, train_ds, val_ds, out_dir, state, rows, make_config, n_samples=n_samples,
                    progress=progress, on_epoch_end=on_epoch_end)
    return _finalize(run, val_ds, out_dir, rows, make_config, stopped=stopped, batch_size=cfg.batch_size,
                     held_out=cfg.select_on != "last", best_epoch=state["best_epoch"])


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters, inside SAM/ASAM when the config asks for it."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                                  weight_decay=cfg.weight_decay)
    return SAM(optimizer, rho=cfg.sam_rho, adaptive=cfg.sam == "asam") if cfg.sam else optimizer


def _time_left(rows: list[dict[str, Any]], epoch: int, epochs: int) -> str:
    """About how long the remaining epochs take, from the mean epoch time so far."""
    seconds = float(np.mean([r["seconds"] for r in rows])) * (epochs - epoch)
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _loop(run: Run, cfg: TrainConfig, train_ds: segments.SegmentDataset, val_ds: segments.SegmentDataset,
          out_dir: Path,
          state: dict[str, Any], rows: list[dict[str, Any]], make_config: Callable[..., dict[str, Any]], *,
          n_samples: int, progress: bool, on_epoch_end: Callable[[int, dict[str, Any]], None] | None) -> bool:
    """Epochs from the one after state['epoch'] to cfg.epochs; returns True when early stopping ended it."""
    for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
        if state["bad_epochs"] >= cfg.patience:
            return True
        start = time.perf_counter()
        torch.manual_seed(run.seed * 7919 + epoch)  # dropout draws depend only on (seed, epoch): resumable
        loader = epoch_loader(train_ds, epoch, n_samples=n_samples, batch_size=cfg.batch_size, seed=run.seed,
                               num_workers=cfg.num_workers, device=run.device, ctx=run.ctx)
        losses_ = ddp.mean_over_ranks(run.ctx, run.device, train_epoch(run, loader, epoch, progress=progress))
        row = {"epoch": epoch, **losses_}
        val = validate(run, val_ds, batch_size=cfg.batch_size, num_workers=cfg.num_workers)
        row.update({k: val[k] for k in ("val_loss", "val_eer", "val_auc", "val_accuracy")},
                   lr=run.optimizer.param_groups[0]["lr"], seconds=round(time.perf_counter() - start, 3))
        if improved(val, state, cfg.select_on):
            state.update(best_error=selection_error(val, cfg.select_on), best_loss=val["val_loss"],
                         best_epoch=epoch, bad_epochs=0)
            if run.ctx.main:  # DDP: rank 0 writes, the others wait below (every rank holds the same weights)
                save_model(run.model, out_dir, config=make_config(best_epoch=epoch))
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch
        rows.append(row)
        if run.ctx.main:
            checkpoint.write_history(rows, out_dir)
            checkpoint.save_last(out_dir, model=run.model, optimizer=run.optimizer, step=run.step, epoch=epoch,
                                 state=state)
        ddp.barrier(run.ctx)
        val_name = "monitor (trained-on clips)" if cfg.select_on == "last" else "val"
        logger.info("epoch %d/%d: train loss %.4f, %s loss %.4f, EER %.2f%%, AUC %.3f, %.1f s%s%s", epoch, cfg.epochs,
                    row["train_loss"], val_name, row["val_loss"], 100 * row["val_eer"], row["val_auc"],
                    row["seconds"], " (best)" if state["best_epoch"] == epoch and cfg.select_on != "last" else "",
                    f", about {_time_left(rows, epoch, cfg.epochs)} left" if epoch < cfg.epochs else "")
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)
    return state["bad_epochs"] >= cfg.patience and state["epoch"] < cfg.epochs


def _finalize(run: Run, val_ds: segments.SegmentDataset, out_dir: Path, rows: list[dict[str, Any]],
              make_config: Callable[..., dict[str, Any]], *, stopped: bool, batch_size: int,
              best_epoch: int, held_out: bool = True) -> TrainResult:
    """Reload the best weights, fit threshold and Platt calibration on validation, write config/metrics.

    held_out=False (select_on="last"): the validation clips were also trained on, so the threshold written
    here is a placeholder the caller replaces (voicelib.stages.final_fit does, from held-out scores) and nothing is
    said.
    """
    from safetensors.torch import load_file

    run.model.load_state_dict(load_file(str(out_dir / WEIGHTS), device=str(run.device)))
    val = validate(run, val_ds, batch_size=batch_size)
    n_ai, n_human = int(val["labels"].sum()), int((val["labels"] == 0).sum())
    (a, b), band, refused = calibrate(val["labels"], val["scores"], val["threshold"], source="validation",
                                      warn=held_out)
    history = checkpoint.write_history(rows, out_dir) if run.ctx.main else pd.DataFrame(rows)
    metrics = {"best_epoch": best_epoch, "val_eer": val["val_eer"], "val_auc": val["val_auc"],
               "val_loss": val["val_loss"], "threshold": val["threshold"], "calibration": {"a": a, "b": b},
               "epochs_run": len(history), "stopped_early": stopped, "n_val_clips": int(len(val["labels"])),
               "n_val_ai": n_ai, "n_val_human": n_human, "calibration_refused": refused, "band": band}
    config_json = make_config(best_epoch=best_epoch, threshold=val["threshold"], calibration={"a": a, "b": b},
                              band=band)
    if run.ctx.main:
        save_model(run.model, out_dir, config=config_json, metrics=metrics)
    ddp.barrier(run.ctx)
    if held_out:
        logger.info("best epoch %d: val EER %.2f%% on %d clips (%d AI, %d human), threshold %.3f",
                    best_epoch, 100 * val["val_eer"], metrics["n_val_clips"], metrics["n_val_ai"],
                    metrics["n_val_human"], val["threshold"])
    else:
        logger.info("kept the last epoch (%d): a fixed budget, nothing held out to select on", best_epoch)
    return TrainResult(out_dir, history, best_epoch, val["val_eer"], val["val_auc"], val["threshold"], (a, b),
                       stopped, run.mode, str(run.device))
