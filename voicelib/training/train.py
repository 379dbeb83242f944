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
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from voicelib import config
from voicelib.audio.augment import AugmentConfig, Augmenter, spec_augment
from voicelib.audio.cache import AudioCache
from voicelib.audio.features import frontend
from voicelib.data import dataset as segments
from voicelib.errors import DataError
from voicelib.files import write_json
from voicelib.metrics import apply_platt, eer, fit_platt, inconclusive_band
from voicelib.model import saving
from voicelib.model.config import OCSOFTMAX, ModelConfig
from voicelib.model.registry import build_model
from voicelib.model.resnet import ResNet18Detector
from voicelib.model.saving import WEIGHTS, load_model, save_model
from voicelib.training import checkpoint, distributed
from voicelib.training.losses import multitask

logger = logging.getLogger(__name__)

MODES = ("scratch", "full", "frozen", "head")
SELECT_ON = ("eer", "accuracy", "last")
SAM_MODES = ("", "sam", "asam")
MIN_CALIBRATION_CLIPS = 10  # per class: fewer validation clips than this give no Platt calibration
REQUIRED_COLUMNS = ("path", "label", "language", "speaker", "duration", "split")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train: every training default is defined here and nowhere else; saved in the model directory."""

    epochs: int = 12  # passes over the training set (early stopping may end sooner)
    patience: int = 4  # epochs without validation improvement before stopping
    lr: float = 1e-3  # peak learning rate (AdamW, linear warm-up then cosine decay)
    batch_size: int = 32  # segments per batch
    weight_decay: float = 0.01  # AdamW weight decay
    warmup_fraction: float = 0.05  # share of the steps spent warming up the learning rate
    mix_prob: float = 0.2  # share of training segments made two-speaker mixtures (multi-speaker head)
    language_weight: float = 0.3  # loss weight of the language head (used when training has >= 2 languages)
    multi_weight: float = 0.3  # loss weight of the multi-speaker head
    family_weight: float = 0.3  # loss weight of the generator-family head (when ModelConfig.family_head is set)
    segments_per_epoch: int = 0  # segments drawn per epoch; 0 means one pass over the training audio
    mode: str = "scratch"  # scratch, full (all weights of base_model), frozen (backbone fixed) or head (AI head)
    base_model: str = ""  # model directory to fine-tune from; empty trains from scratch
    select_on: str = "eer"  # model selection: validation EER, accuracy at probability 0.5, or last (fixed budget)
    seed: int = 0  # seed of initialisation, sampling, augmentation and dropout
    num_workers: int = 0  # DataLoader worker processes (0 = in the training process)
    threads: int = 0  # torch CPU threads while training (0 = leave torch's setting)
    sam: str = ""  # sharpness-aware minimisation: "" (off), "sam" or "asam" (adaptive); doubles the cost of a step
    sam_rho: float = 0.05  # SAM neighbourhood radius (ASAM usually wants about 0.5)

    def __post_init__(self) -> None:
        name = type(self).__name__
        for field, low, high in (("epochs", 1, 100_000), ("patience", 1, 100_000), ("batch_size", 2, 65_536),
                                 ("segments_per_epoch", 0, 10**9), ("seed", 0, 2**31 - 1), ("num_workers", 0, 256),
                                 ("threads", 0, 1024)):
            config.check_range(name, field, getattr(self, field), low, high, integer=True)
        for field, low, high in (("weight_decay", 0, 10), ("warmup_fraction", 0, 0.9), ("mix_prob", 0, 1),
                                 ("language_weight", 0, 100), ("multi_weight", 0, 100), ("family_weight", 0, 100)):
            config.check_range(name, field, getattr(self, field), low, high)
        config.check_range(name, "lr", self.lr, 1e-8, 10.0)
        config.check_range(name, "sam_rho", self.sam_rho, 1e-6, 10.0)
        config.check_choice(name, "sam", self.sam, SAM_MODES)
        config.check_choice(name, "mode", self.mode, MODES)
        config.check_choice(name, "select_on", self.select_on, SELECT_ON)
        if self.mode == "scratch" and self.base_model:
            raise ValueError(f"{name}: mode='scratch' with base_model={self.base_model!r}; "
                             "use mode full, frozen or head to fine-tune it, or drop base_model")
        if self.mode != "scratch" and not self.base_model:
            raise ValueError(f"{name}: mode={self.mode!r} fine-tunes a trained model; set base_model to its directory")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None = None, **fields: Any) -> "TrainConfig":
        """Build from a dict of fields (plus keyword fields), refusing unknown names."""
        return config.from_dict(cls, data, **fields)


@dataclasses.dataclass
class TrainResult:
    """What fit() produced: the model directory and its validation figures."""

    model_dir: Path
    history: pd.DataFrame
    best_epoch: int
    best_val_eer: float
    val_auc: float
    threshold: float
    calibration: tuple[float, float]
    stopped_early: bool
    mode: str = "scratch"
    device: str = "cpu"


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
    from voicelib.data.manifest import family_of

    ai = train_df[train_df["label"] == "ai"]
    families = sorted(set(family_of(ai)) - {"", "unknown"})
    if len(families) < 2:
        logger.warning("family head off: the training AI clips come from %d family (%s); it needs 2 or more",
                       len(families), ", ".join(families) or "none")
        return dataclasses.replace(model_config, family_head=False)
    return dataclasses.replace(model_config, families=tuple(families))


def set_trainable(model: ResNet18Detector, mode: str) -> None:
    """requires_grad per mode: all ('scratch'/'full'), heads only ('frozen'), AI head only ('head')."""
    for name, p in model.named_parameters():
        if mode in ("scratch", "full"):
            p.requires_grad = True
        elif mode == "frozen":
            p.requires_grad = name.startswith("heads.")
        else:
            p.requires_grad = name.startswith("heads.ai.")


def train_mode(model: ResNet18Detector, mode: str) -> None:
    """model.train(), keeping a frozen backbone's BatchNorm statistics fixed."""
    model.train()
    if mode in ("frozen", "head"):
        for module in model.backbone_modules():
            module.eval()


def lr_factor(step: int, *, total: int, warmup: int, floor: float = 0.01) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to `floor` at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min((step - warmup) / max(total - warmup, 1), 1.0)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclasses.dataclass
class _Run:
    """The pieces one training run passes between its steps."""

    model: ResNet18Detector
    frontend: nn.Module
    optimizer: torch.optim.Optimizer
    device: torch.device
    mode: str
    seed: int
    lr: float
    total_steps: int
    warmup_steps: int
    weights: dict[str, float]
    spec_augment: bool
    step: int = 0
    ai_loss: nn.Module | None = None  # OC-Softmax when the model's AI head is one; None: binary cross-entropy
    sam: bool = False  # the optimizer is voicelib.training.sam.SAM: two passes per step
    net: nn.Module | None = None  # what the training steps call: the model, or it in DistributedDataParallel
    ctx: distributed.Context = distributed.Context()  # this process among the DDP ranks (rank 0 of 1 alone)

    def autocast(self):
        """bf16 autocast on CUDA; a no-op on CPU (CPU runs stay in float32 and deterministic)."""
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda")


def train_epoch(run: _Run, loader: DataLoader, epoch: int, *, progress: bool) -> dict[str, float]:
    """One pass over `loader`; returns mean losses per head."""
    train_mode(run.model, run.mode)
    params = [p for p in run.model.parameters() if p.requires_grad]
    generator = torch.Generator(device=run.device).manual_seed(run.seed * 1000 + epoch + 1_000_003 * run.ctx.rank)
    sums: dict[str, float] = {}
    n = 0
    for batch in tqdm(loader, desc=f"epoch {epoch}", disable=not progress, leave=False):
        batch = {k: v.to(run.device, non_blocking=True) for k, v in batch.items()}
        factor = lr_factor(run.step, total=run.total_steps, warmup=run.warmup_steps)
        for group in run.optimizer.param_groups:
            group["lr"] = run.lr * factor
        with torch.no_grad():
            feats = run.frontend(batch["wave"])
            if run.spec_augment:
                feats = spec_augment(feats, generator, max_freq=max(feats.shape[1] // 10, 1))
        with run.autocast():
            out = (run.net or run.model)(feats)
        parts = multitask(out, batch, run.weights, run.ai_loss)
        run.optimizer.zero_grad(set_to_none=True)
        parts["total"].backward()
        nn.utils.clip_grad_norm_(params, 5.0)
        if run.sam:
            _sam_second_pass(run, feats, batch, params)
        else:
            run.optimizer.step()
        run.step += 1
        n += 1
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach())
    order = ("total", "ai", "language", "multi") + (("family",) if run.weights.get("family") else ())
    return {f"train_{'loss' if k == 'total' else k + '_loss'}": sums.get(k, 0.0) / max(n, 1) for k in order}


def _sam_second_pass(run: _Run, feats: torch.Tensor, batch: dict[str, torch.Tensor], params: list) -> None:
    """SAM: step to the worst nearby weights, take the gradient there, then update from the original weights."""
    from voicelib.training.sam import frozen_bn_stats

    run.optimizer.first_step(zero_grad=True)
    with frozen_bn_stats(run.model), run.autocast():
        again = multitask((run.net or run.model)(feats), batch, run.weights, run.ai_loss)
    again["total"].backward()
    nn.utils.clip_grad_norm_(params, 5.0)
    run.optimizer.second_step(zero_grad=True)


@torch.no_grad()
def validate(run: _Run, dataset: segments.SegmentDataset, *, batch_size: int, num_workers: int = 0) -> dict[str, Any]:
    """Clip scores (mean AI logit over segments), val loss, EER, AUC and the EER threshold (DDP: ranks share it)."""
    from sklearn.metrics import roc_auc_score

    run.model.eval()
    mine = torch.utils.data.Subset(dataset, range(run.ctx.rank, len(dataset), run.ctx.world))
    loader = DataLoader(mine, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    n_clips = len(dataset.frame)
    sums = torch.zeros(n_clips, dtype=torch.float64)
    counts = torch.zeros(n_clips, dtype=torch.float64)
    loss_sum, n_seg = 0.0, 0
    for batch in loader:
        feats = run.frontend(batch["wave"].to(run.device))
        with run.autocast():
            logits = run.model(feats)["ai"].float().cpu()
        loss_sum += float(F.binary_cross_entropy_with_logits(logits, batch["ai"], reduction="sum"))
        n_seg += len(logits)
        sums.index_add_(0, batch["clip"], logits.double())
        counts.index_add_(0, batch["clip"], torch.ones_like(logits, dtype=torch.float64))
    totals = torch.tensor([loss_sum, n_seg], dtype=torch.float64)
    distributed.all_sum(run.ctx, run.device, sums, counts, totals)  # every rank gets the same scores
    loss_sum, n_seg = float(totals[0]), int(totals[1])
    scores = (sums / counts.clamp(min=1)).numpy()
    labels = dataset.labels
    rate, threshold = eer(labels, scores)
    accuracy = float(((scores >= 0) == (labels == 1)).mean())  # at probability 0.5, as common recipes select
    return {"val_loss": loss_sum / max(n_seg, 1), "val_eer": rate, "val_auc": float(roc_auc_score(labels, scores)),
            "val_accuracy": accuracy, "threshold": threshold, "scores": scores, "labels": labels}


def _error(val: dict[str, Any], select_on: str) -> float:
    """The validation figure model selection minimises: EER, or the error rate at probability 0.5."""
    return val["val_eer"] if select_on == "eer" else 1.0 - val["val_accuracy"]


def _better(val: dict[str, Any], state: dict[str, Any], select_on: str = "eer") -> bool:
    """Lower selection error wins; a tie goes to the lower val loss ("last": every epoch replaces the one before)."""
    if select_on == "last":
        return True
    error = _error(val, select_on)
    if error < state["best_error"] - 1e-9:
        return True
    return abs(error - state["best_error"]) <= 1e-9 and val["val_loss"] < state["best_loss"]


def _epoch_loader(dataset: segments.SegmentDataset, epoch: int, *, n_samples: int, batch_size: int, seed: int,
                  num_workers: int, device: torch.device, ctx: distributed.Context) -> DataLoader:
    """A class-balanced loader whose draws depend only on (seed, epoch); a DDP rank gets its share of each batch."""
    dataset.set_epoch(epoch)
    sampler = segments.balanced_sampler(dataset.labels, num_samples=n_samples, seed=seed * 1000 + epoch)
    batches = distributed.RankBatches(sampler, batch_size=batch_size, drop_last=n_samples >= batch_size, ctx=ctx)
    return DataLoader(dataset, batch_sampler=batches, num_workers=num_workers, worker_init_fn=segments.seed_worker,
                      pin_memory=device.type == "cuda", persistent_workers=False)


def fit(manifest: pd.DataFrame, config: TrainConfig | None = None, *, out_dir: str | os.PathLike,
        model_config: ModelConfig | None = None, augment_config: AugmentConfig | None = None, device: str = "auto",
        cache_dir: str | os.PathLike | None = None, resume: bool = False, progress: bool = True,
        on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None) -> TrainResult:
    """Train (or fine-tune) on the manifest's train split, select on its val split; write a model dir."""
    cfg = config or TrainConfig()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    train_df, val_df = check_splits(manifest)
    ctx, dev = distributed.setup(resolve_device(device))  # alone: rank 0 of 1; under torchrun: DDP
    progress = progress and ctx.main
    out_dir = checkpoint.prepare_out_dir(out_dir, resume=resume) if ctx.main else Path(out_dir)
    distributed.barrier(ctx)
    model, base_info = prepare_model(cfg, with_families(model_config, train_df))
    mcfg = model.cfg
    cache = AudioCache(cache_dir or out_dir / "cache", mcfg.features.sample_rate, preprocess=mcfg.preprocess)
    both = pd.concat([train_df, val_df])
    keys = list(zip(both["path"], both["hash"] if "hash" in both else [None] * len(both)))
    distributed.main_first(ctx, lambda: cache.warm(keys, progress=progress))  # rank 0 fills it, the others read
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
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                                  weight_decay=cfg.weight_decay)
    if cfg.sam:
        from voicelib.training.sam import SAM

        optimizer = SAM(optimizer, rho=cfg.sam_rho, adaptive=cfg.sam == "asam")
    ai_loss = None
    if mcfg.ai_head == "ocsoftmax":
        from voicelib.training.losses import OCSoftmax

        ai_loss = OCSoftmax(mcfg.embedding_dim, **OCSOFTMAX)
    run = _Run(model, frontend(mcfg.features).to(dev), optimizer, dev, cfg.mode, cfg.seed, cfg.lr, steps,
               max(int(cfg.warmup_fraction * steps), 1), weights, aug.spec_augment, ai_loss=ai_loss, sam=bool(cfg.sam),
               net=distributed.wrap(model, ctx, dev), ctx=ctx)
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
                     held_out=cfg.select_on != "last",
                     best_epoch=state["best_epoch"])


def _time_left(rows: list[dict[str, Any]], epoch: int, epochs: int) -> str:
    """About how long the remaining epochs take, from the mean epoch time so far."""
    seconds = float(np.mean([r["seconds"] for r in rows])) * (epochs - epoch)
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _loop(run: _Run, cfg: TrainConfig, train_ds: segments.SegmentDataset, val_ds: segments.SegmentDataset,
          out_dir: Path,
          state: dict[str, Any], rows: list[dict[str, Any]], make_config: Callable[..., dict[str, Any]], *,
          n_samples: int, progress: bool, on_epoch_end: Callable[[int, dict[str, Any]], None] | None) -> bool:
    """Epochs from the one after state['epoch'] to cfg.epochs; returns True when early stopping ended it."""
    for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
        if state["bad_epochs"] >= cfg.patience:
            return True
        start = time.perf_counter()
        torch.manual_seed(run.seed * 7919 + epoch)  # dropout draws depend only on (seed, epoch): resumable
        loader = _epoch_loader(train_ds, epoch, n_samples=n_samples, batch_size=cfg.batch_size, seed=run.seed,
                               num_workers=cfg.num_workers, device=run.device, ctx=run.ctx)
        losses_ = distributed.mean_over_ranks(run.ctx, run.device, train_epoch(run, loader, epoch, progress=progress))
        row = {"epoch": epoch, **losses_}
        val = validate(run, val_ds, batch_size=cfg.batch_size, num_workers=cfg.num_workers)
        row.update({k: val[k] for k in ("val_loss", "val_eer", "val_auc", "val_accuracy")},
                   lr=run.optimizer.param_groups[0]["lr"], seconds=round(time.perf_counter() - start, 3))
        if _better(val, state, cfg.select_on):
            state.update(best_error=_error(val, cfg.select_on), best_loss=val["val_loss"],
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
        distributed.barrier(run.ctx)
        val_name = "monitor (trained-on clips)" if cfg.select_on == "last" else "val"
        logger.info("epoch %d/%d: train loss %.4f, %s loss %.4f, EER %.2f%%, AUC %.3f, %.1f s%s%s", epoch, cfg.epochs,
                    row["train_loss"], val_name, row["val_loss"], 100 * row["val_eer"], row["val_auc"],
                    row["seconds"], " (best)" if state["best_epoch"] == epoch and cfg.select_on != "last" else "",
                    f", about {_time_left(rows, epoch, cfg.epochs)} left" if epoch < cfg.epochs else "")
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)
    return state["bad_epochs"] >= cfg.patience and state["epoch"] < cfg.epochs


def calibrate(labels, scores, threshold: float, *, source: str,
              warn: bool = True) -> tuple[tuple[float, float], float, str | None]:
    """Platt calibration and inconclusive band from held-out clip scores: ((a, b), band, why refused or None).

    Fewer than MIN_CALIBRATION_CLIPS of a class give no calibration (a=1, b=0) and say so.
    """
    labels = np.asarray(labels).astype(int)
    n_ai, n_human = int(labels.sum()), int((labels == 0).sum())
    refused = None
    if min(n_ai, n_human) < MIN_CALIBRATION_CLIPS:
        refused = (f"not calibrated: {source} has {n_ai} AI and {n_human} human clips (< {MIN_CALIBRATION_CLIPS} "
                   "of a class); scores are the raw sigmoid, and the threshold rests on few clips")
        if warn:
            logger.warning(refused)
    a, b = fit_platt(labels, scores) if refused is None else (1.0, 0.0)
    band = inconclusive_band(labels, apply_platt(scores, a, b), float(apply_platt(threshold, a, b)))
    return (float(a), float(b)), band, refused


def _finalize(run: _Run, val_ds: segments.SegmentDataset, out_dir: Path, rows: list[dict[str, Any]],
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
    distributed.barrier(run.ctx)
    if held_out:
        logger.info("best epoch %d: val EER %.2f%% on %d clips (%d AI, %d human), threshold %.3f",
                    best_epoch, 100 * val["val_eer"], metrics["n_val_clips"], metrics["n_val_ai"],
                    metrics["n_val_human"], val["threshold"])
    else:
        logger.info("kept the last epoch (%d): a fixed budget, nothing held out to select on", best_epoch)
    return TrainResult(out_dir, history, best_epoch, val["val_eer"], val["val_auc"], val["threshold"], (a, b),
                       stopped, run.mode, str(run.device))


def write_summary(result: TrainResult, path: str | os.PathLike, *, store_entry: str | os.PathLike | None,
                  promoted: bool) -> dict[str, Any]:
    """Write the run's train.json (where the model went, how training ended) and return it."""
    summary = {"model_dir": Path(result.model_dir).name, "store_entry": str(store_entry) if store_entry else None,
               "promoted": promoted, "best_epoch": result.best_epoch, "best_val_eer": result.best_val_eer,
               "val_auc": result.val_auc, "threshold": result.threshold, "calibration": list(result.calibration),
               "stopped_early": result.stopped_early, "epochs_run": len(result.history), "mode": result.mode,
               "device": result.device}
    write_json(path, summary)
    return summary
