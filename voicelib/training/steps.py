"""One epoch: the state of a run, the training pass (with SAM when asked), validation, model selection."""
from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from voicelib.audio.augment import spec_augment
from voicelib.data import dataset as segments
from voicelib.metrics import eer
from voicelib.model.resnet import ResNet18Detector
from voicelib.training import ddp
from voicelib.training.losses import multitask
from voicelib.training.sam import frozen_bn_stats

logger = logging.getLogger(__name__)


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
class Run:
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
    ctx: ddp.Context = ddp.Context()  # this process among the DDP ranks (rank 0 of 1 alone)

    def autocast(self):
        """bf16 autocast on CUDA; a no-op on CPU (CPU runs stay in float32 and deterministic)."""
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda")


def train_epoch(run: Run, loader: DataLoader, epoch: int, *, progress: bool) -> dict[str, float]:
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


def _sam_second_pass(run: Run, feats: torch.Tensor, batch: dict[str, torch.Tensor], params: list) -> None:
    """SAM: step to the worst nearby weights, take the gradient there, then update from the original weights."""

    run.optimizer.first_step(zero_grad=True)
    with frozen_bn_stats(run.model), run.autocast():
        again = multitask((run.net or run.model)(feats), batch, run.weights, run.ai_loss)
    again["total"].backward()
    nn.utils.clip_grad_norm_(params, 5.0)
    run.optimizer.second_step(zero_grad=True)


@torch.no_grad()
def validate(run: Run, dataset: segments.SegmentDataset, *, batch_size: int, num_workers: int = 0) -> dict[str, Any]:
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
    ddp.all_sum(run.ctx, run.device, sums, counts, totals)  # every rank gets the same scores
    loss_sum, n_seg = float(totals[0]), int(totals[1])
    scores = (sums / counts.clamp(min=1)).numpy()
    labels = dataset.labels
    rate, threshold = eer(labels, scores)
    accuracy = float(((scores >= 0) == (labels == 1)).mean())  # at probability 0.5, as common recipes select
    return {"val_loss": loss_sum / max(n_seg, 1), "val_eer": rate, "val_auc": float(roc_auc_score(labels, scores)),
            "val_accuracy": accuracy, "threshold": threshold, "scores": scores, "labels": labels}


def selection_error(val: dict[str, Any], select_on: str) -> float:
    """The validation figure model selection minimises: EER, or the error rate at probability 0.5."""
    return val["val_eer"] if select_on == "eer" else 1.0 - val["val_accuracy"]


def improved(val: dict[str, Any], state: dict[str, Any], select_on: str = "eer") -> bool:
    """Lower selection error wins; a tie goes to the lower val loss ("last": every epoch replaces the one before)."""
    if select_on == "last":
        return True
    error = selection_error(val, select_on)
    if error < state["best_error"] - 1e-9:
        return True
    return abs(error - state["best_error"]) <= 1e-9 and val["val_loss"] < state["best_loss"]


def epoch_loader(dataset: segments.SegmentDataset, epoch: int, *, n_samples: int, batch_size: int, seed: int,
                  num_workers: int, device: torch.device, ctx: ddp.Context) -> DataLoader:
    """A class-balanced loader whose draws depend only on (seed, epoch); a DDP rank gets its share of each batch."""
    dataset.set_epoch(epoch)
    sampler = segments.balanced_sampler(dataset.labels, num_samples=n_samples, seed=seed * 1000 + epoch)
    batches = ddp.RankBatches(sampler, batch_size=batch_size, drop_last=n_samples >= batch_size, ctx=ctx)
    return DataLoader(dataset, batch_sampler=batches, num_workers=num_workers, worker_init_fn=segments.seed_worker,
                      pin_memory=device.type == "cuda", persistent_workers=False)
