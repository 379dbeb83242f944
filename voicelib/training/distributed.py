"""Training on several processes with PyTorch DDP, started by torchrun (one machine or several).

`train.fit` calls `setup` (a process group from torchrun's RANK/WORLD_SIZE/LOCAL_RANK: NCCL on GPUs, gloo on
CPU; nothing without torchrun), `wrap` (DistributedDataParallel), `RankBatches` (each rank takes its share of
every global batch of the seeded, class-balanced sample) and `all_sum`; rank 0 alone writes files. `fit`
is what the fine-tune stage calls: in this process, or through torchrun with `nproc_per_node` > 1:

    python -m torch.distributed.run --nproc-per-node 8 -m voicelib.training.distributed RUN_DIR/model.ddp.json
    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
        -m voicelib.training.distributed --run-dir RUN_DIR        # on each machine; RUN_DIR on shared storage
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import pandas as pd
import torch
from torch import distributed as dist
from torch import nn
from torch.utils.data import Sampler

from voicelib.errors import ModelError

if TYPE_CHECKING:
    from voicelib.training.train import TrainConfig, TrainResult

log = logging.getLogger(__name__)

REQUEST_SUFFIX = ".ddp.json"


@dataclasses.dataclass(frozen=True)
class Context:
    """This process's place among the training processes (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """True on the process that writes files and logs."""
        return self.rank == 0


def setup(device: torch.device) -> tuple[Context, torch.device]:
    """Join torchrun's process group (once) and return this rank's context and device (cuda:LOCAL_RANK on GPUs)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Context(), device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    ctx = Context(dist.get_rank(), dist.get_world_size())
    if ctx.main:
        log.info("DDP: %d processes (%s), this is rank 0", ctx.world, dist.get_backend())
    return ctx, device


def barrier(ctx: Context) -> None:
    """Wait for every rank (a no-op alone)."""
    if ctx.world > 1:
        dist.barrier()


def main_first(ctx: Context, work: Callable[[], Any]) -> None:
    """Run `work` on rank 0, then on the others (e.g. fill a shared cache once, then read it)."""
    if ctx.main:
        work()
    barrier(ctx)
    if not ctx.main:
        work()


def wrap(model: nn.Module, ctx: Context, device: torch.device) -> nn.Module:
    """The model in DistributedDataParallel (gradients averaged over ranks); the model itself alone."""
    if ctx.world <= 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)  # losses.multitask keeps every head in the graph


def all_sum(ctx: Context, device: torch.device, *tensors: torch.Tensor) -> None:
    """Sum each tensor over the ranks, in place (through `device`: NCCL reduces GPU tensors only)."""
    if ctx.world <= 1:
        return
    for tensor in tensors:
        moved = tensor.to(device)
        dist.all_reduce(moved)
        tensor.copy_(moved.to(tensor.device))


def mean_over_ranks(ctx: Context, device: torch.device, values: dict[str, float]) -> dict[str, float]:
    """Each value averaged over the ranks (the epoch's train losses)."""
    if ctx.world <= 1:
        return values
    packed = torch.tensor(list(values.values()), dtype=torch.float64)
    all_sum(ctx, device, packed)
    return {k: float(v) / ctx.world for k, v in zip(values, packed)}


class RankBatches(Sampler[list[int]]):
    """Global batches of `batch_size` from `sampler` (drawn alike on every rank); each rank yields its slice."""

    def __init__(self, sampler: Sampler[int], *, batch_size: int, drop_last: bool, ctx: Context) -> None:
        if batch_size % ctx.world:
            raise ValueError(f"batch_size {batch_size} is not a multiple of the {ctx.world} training processes; "
                             f"use a multiple of {ctx.world} (it is the global batch, shared among them)")
        self.sampler, self.batch_size, self.drop_last, self.ctx = sampler, batch_size, drop_last, ctx

    def _global(self) -> Iterator[list[int]]:
        batch: list[int] = []
        for index in self.sampler:
            batch.append(int(index))
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __iter__(self) -> Iterator[list[int]]:
        world, rank = self.ctx.world, self.ctx.rank
        for batch in self._global():
            share = -(-len(batch) // world)  # a short last batch is padded by repetition: equal steps everywhere
            padded = (batch * world)[: share * world] if len(batch) < share * world else batch
            yield padded[rank * share:(rank + 1) * share]

    def __len__(self) -> int:
        n = len(self.sampler)  # type: ignore[arg-type]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


def fit(manifest: pd.DataFrame, config: TrainConfig, *, nproc_per_node: int = 1, out_dir: str | os.PathLike,
        **options: Any) -> TrainResult:
    """`train.fit` here (nproc_per_node 1), or in `nproc_per_node` DDP processes through torchrun; a TrainResult."""
    from voicelib.training import train

    if nproc_per_node <= 1:
        return train.fit(manifest, config, out_dir=out_dir, **options)
    request = write_request(manifest, config, out_dir=out_dir, **options)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc_per_node}",
               "-m", "voicelib.training.distributed", str(request)]
    log.info("training in %d DDP processes: %s", nproc_per_node, " ".join(command))
    here = str(Path(__file__).resolve().parents[2])  # the processes import this very copy of voicelib
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run(command, check=False, env=env)
    if done.returncode:
        raise ModelError(f"DDP training ({nproc_per_node} processes) exited with status {done.returncode}; see its "
                         f"log above; rerun with resume_training=True to continue from the last epoch")
    return read_result(out_dir)


def write_request(manifest: pd.DataFrame, config: TrainConfig, *, out_dir: str | os.PathLike, model_config=None,
                  augment_config=None, device: str = "auto", cache_dir: str | os.PathLike | None = None,
                  resume: bool = False, progress: bool = False) -> Path:
    """Write what a torchrun-launched `fit` needs next to out_dir: <out_dir>.ddp.json and <out_dir>.ddp.csv."""
    from voicelib.data import manifest as manifests
    from voicelib.files import write_json

    out_dir = Path(out_dir).resolve()
    table = out_dir.with_name(out_dir.name + ".ddp.csv")
    manifests.write_manifest(manifest, table)
    request = out_dir.with_name(out_dir.name + REQUEST_SUFFIX)
    write_json(request, {"manifest": str(table), "out_dir": str(out_dir), "train": config.to_dict(),
                         "model": model_config.to_dict() if model_config is not None else None,
                         "augment": augment_config.to_dict() if augment_config is not None else None,
                         "device": device, "cache_dir": str(cache_dir) if cache_dir else None, "resume": resume,
                         "progress": progress})
    return request


def request_from_run(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The request the fine-tune stage would write, built from a run directory (stages 01 and 02 done)."""
    from voicelib.files import read_json

    run_dir = Path(run_dir).resolve()
    params = read_json(run_dir / "params.json").get("parameters", {})
    for needed in (run_dir / "manifest.csv", run_dir / "augment" / "augment.json"):
        if not needed.is_file():
            raise FileNotFoundError(f"{needed}: missing; run stages 01 and 02 first (run_pipeline.py --stages 01 02)")
    train_fields = {**params.get("training", {}), "seed": params.get("seed", 0)}
    return {"manifest": str(run_dir / "manifest.csv"), "out_dir": str(run_dir / "model"), "train": train_fields,
            "model": params.get("architecture"), "augment": read_json(run_dir / "augment" / "augment.json")["config"],
            "device": params.get("device", "auto"), "resume": bool(params.get("resume_training", False)),
            "cache_dir": str(Path(params.get("data_root", run_dir / "data")) / ".cache"), "progress": False}


def run_request(req: dict[str, Any]) -> None:
    """Train as one rank of a torchrun job from a request (`write_request`'s file, or `request_from_run`)."""
    from voicelib.audio.augment import AugmentConfig
    from voicelib.data import manifest as manifests
    from voicelib.model.config import ModelConfig
    from voicelib.training import train

    model = ModelConfig.from_dict(req["model"]) if req["model"] is not None else None
    augment = AugmentConfig.from_dict(req["augment"]) if req["augment"] is not None else None
    try:
        train.fit(manifests.read_manifest(req["manifest"]), train.TrainConfig.from_dict(req["train"]),
                  out_dir=req["out_dir"], model_config=model, augment_config=augment, device=req["device"],
                  cache_dir=req["cache_dir"], resume=req["resume"], progress=req["progress"])
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def read_result(out_dir: str | os.PathLike) -> TrainResult:
    """The TrainResult of a finished model directory (what fit() returned in the rank-0 process)."""
    from voicelib.files import read_json
    from voicelib.model.saving import HISTORY
    from voicelib.training import train

    out_dir = Path(out_dir)
    metrics, meta = read_json(out_dir / "metrics.json"), read_json(out_dir / "config.json")
    cal = metrics["calibration"]
    return train.TrainResult(out_dir, pd.read_csv(out_dir / HISTORY), int(metrics["best_epoch"]),
                             float(metrics["val_eer"]), float(metrics["val_auc"]), float(metrics["threshold"]),
                             (float(cal["a"]), float(cal["b"])), bool(metrics["stopped_early"]),
                             meta["train_config"]["mode"], str(meta["training"]["device"]))


def main(argv: list[str] | None = None) -> int:
    """Entry point of each torchrun process: `python -m voicelib.training.distributed REQUEST.json`."""
    from voicelib.files import read_json

    p = argparse.ArgumentParser(description="one DDP training process (start it with torchrun)")
    p.add_argument("request", nargs="?", help="the <model dir>.ddp.json the fine-tune stage wrote")
    p.add_argument("--run-dir", help="or: train <run-dir>/model from that run's manifest, augment.json and params")
    args = p.parse_args(argv)
    if bool(args.request) == bool(args.run_dir):
        p.error("give either a request file or --run-dir")
    logging.basicConfig(level=logging.INFO if os.environ.get("RANK", "0") == "0" else logging.ERROR,
                        format="%(levelname)s %(name)s: %(message)s")
    run_request(read_json(args.request) if args.request else request_from_run(args.run_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
