"""Training on several processes with PyTorch DDP, started by torchrun (one machine or several).

`fit.fit` calls `ddp.setup` (a process group from torchrun's RANK/WORLD_SIZE/LOCAL_RANK: NCCL on GPUs, gloo on
CPU; nothing without torchrun), `wrap` (DistributedDataParallel), `RankBatches` (each rank takes its share of
every global batch of the seeded, class-balanced sample) and `all_sum`; rank 0 alone writes files. `launch.fit`
is what the fine-tune stage calls: in this process, or through torchrun with `nproc_per_node` > 1:

    python -m torch.distributed.run --nproc-per-node 8 -m voicelib.training.launch RUN_DIR/model.ddp.json
    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
        -m voicelib.training.launch --run-dir RUN_DIR        # on each machine; RUN_DIR on shared storage
"""
from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
from torch import distributed as dist

from voicelib.audio.augment import AugmentConfig
from voicelib.data import manifest as manifests
from voicelib.errors import ModelError
from voicelib.files import RunDir, read_json, write_json
from voicelib.model.config import ModelConfig
from voicelib.model.saving import CONFIG, HISTORY, METRICS
from voicelib.training import fit as single_process
from voicelib.training.config import TrainConfig, TrainResult

log = logging.getLogger(__name__)


REQUEST_SUFFIX = ".ddp.json"


def fit(manifest: pd.DataFrame, config: TrainConfig, *, nproc_per_node: int = 1, out_dir: str | os.PathLike,
        **options: Any) -> TrainResult:
    """`fit` here (nproc_per_node 1), or in `nproc_per_node` DDP processes through torchrun; a TrainResult."""

    if nproc_per_node <= 1:
        return single_process.fit(manifest, config, out_dir=out_dir, **options)
    request = write_request(manifest, config, out_dir=out_dir, **options)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc_per_node}",
               "-m", "voicelib.training.launch", str(request)]
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

    run_dir = Path(run_dir).resolve()
    run = RunDir(run_dir)
    params = read_json(run.params).get("parameters", {})
    for needed in (run.manifest, run.augment_config):
        if not needed.is_file():
            raise FileNotFoundError(f"{needed}: missing; run stages 01 and 02 first (run_pipeline.py --stages 01 02)")
    train_fields = {**params.get("training", {}), "seed": params.get("seed", 0)}
    return {"manifest": str(run.manifest), "out_dir": str(run.model), "train": train_fields,
            "model": params.get("architecture"), "augment": read_json(run.augment_config)["config"],
            "device": params.get("device", "auto"), "resume": bool(params.get("resume_training", False)),
            "cache_dir": str(Path(params.get("data_root", run_dir / "data")) / ".cache"), "progress": False}


def run_request(req: dict[str, Any]) -> None:
    """Train as one rank of a torchrun job from a request (`write_request`'s file, or `request_from_run`)."""

    model = ModelConfig.from_dict(req["model"]) if req["model"] is not None else None
    augment = AugmentConfig.from_dict(req["augment"]) if req["augment"] is not None else None
    try:
        single_process.fit(manifests.read_manifest(req["manifest"]), TrainConfig.from_dict(req["train"]),
                  out_dir=req["out_dir"], model_config=model, augment_config=augment, device=req["device"],
                  cache_dir=req["cache_dir"], resume=req["resume"], progress=req["progress"])
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def read_result(out_dir: str | os.PathLike) -> TrainResult:
    """The TrainResult of a finished model directory (what fit() returned in the rank-0 process)."""

    out_dir = Path(out_dir)
    metrics, meta = read_json(out_dir / METRICS), read_json(out_dir / CONFIG)
    cal = metrics["calibration"]
    return TrainResult(out_dir, pd.read_csv(out_dir / HISTORY), int(metrics["best_epoch"]),
                             float(metrics["val_eer"]), float(metrics["val_auc"]), float(metrics["threshold"]),
                             (float(cal["a"]), float(cal["b"])), bool(metrics["stopped_early"]),
                             meta["train_config"]["mode"], str(meta["training"]["device"]))


def main(argv: list[str] | None = None) -> int:
    """Entry point of each torchrun process: `python -m voicelib.training.launch REQUEST.json`."""

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
