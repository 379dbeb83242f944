"""DDP under torchrun: the process group, the wrapped model, each rank's share of every batch, sums over ranks."""
from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Callable, Iterator

import torch
from torch import distributed as dist
from torch import nn
from torch.utils.data import Sampler

log = logging.getLogger(__name__)


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
