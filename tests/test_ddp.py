"""DDP training through torchrun with 2 CPU (gloo) processes: the single-process losses, rank-0 files, resume."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from voicelib.audio.augment import AugmentConfig
from voicelib.data import dataset
from voicelib.files import read_json
from voicelib.training import fit as training
from voicelib.training import launch
from voicelib.training.config import TrainConfig
from voicelib.training.ddp import Context, RankBatches
from voicelib.training.launch import read_result, request_from_run, write_request

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ROOT = Path(__file__).resolve().parents[1]
PLAIN = AugmentConfig(**{f: 0.0 for f in AugmentConfig.__dataclass_fields__ if f.startswith("p_")}, spec_augment=False)


def _config(**fields) -> TrainConfig:
    """Deterministic training: no mixtures, augmentation or dropout; 4 global batches of 8 per epoch."""
    return TrainConfig(**{"epochs": 2, "batch_size": 8, "segments_per_epoch": 32, "lr": 3e-3, "seed": 0,
                                "mix_prob": 0.0, "threads": 1, **fields})


def _torchrun(request: Path, *, nproc: int = 2, background: bool = False):
    """torchrun (python -m torch.distributed.run) of voicelib.training.launch on this machine."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "voicelib.training.launch", str(request)]
    if background:
        return subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def toy(tmp_path_factory, toy_manifest) -> pd.DataFrame:
    return toy_manifest(tmp_path_factory.mktemp("toy"))


@pytest.fixture(scope="module")
def model_config(tiny_config):
    """The tiny model without dropout: one process and two see the same network."""
    return tiny_config(dropout=0.0)


@pytest.mark.slow  # torchrun: two training processes
def test_two_processes_match_one_with_the_same_global_batch(toy, tmp_path, model_config):
    one = training.fit(toy, _config(), out_dir=tmp_path / "one", model_config=model_config, augment_config=PLAIN,
                       device="cpu", progress=False, cache_dir=tmp_path / "cache")
    two = launch.fit(toy, _config(), nproc_per_node=2, out_dir=tmp_path / "two", model_config=model_config,
                     augment_config=PLAIN, device="cpu", cache_dir=tmp_path / "cache")  # as the stage does
    a, b = one.history, two.history
    print(a[["epoch", "train_loss", "val_loss", "val_eer"]], b[["epoch", "train_loss", "val_loss", "val_eer"]])
    assert list(b["epoch"]) == [1, 2] and read_json(tmp_path / "two" / "config.json")["training"]["ranks"] == 2
    # BatchNorm statistics come from each rank's half batch (as DDP does), so the match is close, not exact
    np.testing.assert_allclose(b["train_loss"], a["train_loss"], rtol=0.05)
    np.testing.assert_allclose(b["val_loss"], a["val_loss"], rtol=0.05)
    assert abs(two.threshold - one.threshold) < 0.5 and two.best_epoch in (1, 2) and two.mode == "scratch"
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())


def _last_epoch(model_dir: Path) -> int:
    path = model_dir / "checkpoints" / "last.pt"
    return int(torch.load(path, weights_only=True)["epoch"]) if path.is_file() else 0


@pytest.mark.slow  # torchrun, killed and run again
def test_an_interrupted_ddp_run_resumes_from_its_last_epoch(toy, tmp_path, model_config):
    cfg = _config(epochs=6, segments_per_epoch=16, patience=100)
    out = tmp_path / "m"
    request = write_request(toy, cfg, out_dir=out, model_config=model_config, augment_config=PLAIN,
                                        device="cpu", cache_dir=tmp_path / "cache")
    job = _torchrun(request, background=True)
    deadline = time.time() + 240
    while _last_epoch(out) < 1 and job.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(job.pid, signal.SIGKILL)  # the whole torchrun job dies, as on a lost machine
    job.wait()
    stopped = _last_epoch(out)
    assert 1 <= stopped < cfg.epochs, f"checkpoint at epoch {stopped}: the run was not interrupted mid-way"
    before = pd.read_csv(out / "history.csv")
    request = write_request(toy, cfg, out_dir=out, model_config=model_config, augment_config=PLAIN,
                                        device="cpu", cache_dir=tmp_path / "cache", resume=True)
    _torchrun(request)
    after = read_result(out).history
    assert list(after["epoch"]) == list(range(1, cfg.epochs + 1))
    pd.testing.assert_frame_equal(after.iloc[:stopped].reset_index(drop=True),
                                  before.iloc[:stopped].reset_index(drop=True))  # earlier epochs kept as they were


def test_rank_batches_split_each_global_batch_of_the_balanced_sample():
    labels = np.array([0] * 30 + [1] * 6)
    draw = lambda: dataset.balanced_sampler(labels, num_samples=20, seed=3)  # noqa: E731 - same seed each time
    alone = list(RankBatches(draw(), batch_size=8, drop_last=True, ctx=Context()))
    ranks = [list(RankBatches(draw(), batch_size=8, drop_last=True, ctx=Context(r, 2)))
             for r in range(2)]
    assert len(alone) == 2 and all(len(b) == 4 for r in ranks for b in r)
    assert [a + b for a, b in zip(*ranks)] == alone  # together the ranks see exactly the single process's batches
    assert abs(np.mean(labels[np.concatenate(alone)]) - 0.5) < 0.3  # class-balanced draws, not 1 in 6
    tail = [list(RankBatches(list(range(5)), batch_size=8, drop_last=False, ctx=Context(r, 2)))
            for r in range(2)]
    assert tail == [[[0, 1, 2]], [[3, 4, 0]]]  # a short last batch: equal shares (padded), every rank steps alike
    with pytest.raises(ValueError, match="multiple of the 2 training processes"):
        RankBatches(draw(), batch_size=7, drop_last=True, ctx=Context(0, 2))


def test_a_run_directory_gives_the_stage_request(toy, tmp_path):
    from voicelib.data import manifest
    from voicelib.files import write_json

    run = tmp_path / "run"
    manifest.write_manifest(toy, run / "manifest.csv")
    write_json(run / "augment" / "augment.json", {"config": PLAIN.to_dict()})
    write_json(run / "params.json", {"parameters": {"training": {"epochs": 3}, "seed": 5, "architecture": {"width": 8},
                                                    "device": "cpu", "data_root": str(tmp_path / "data")}})
    req = request_from_run(run)
    assert TrainConfig.from_dict(req["train"]) == TrainConfig(epochs=3, seed=5)
    assert req["out_dir"] == str(run.resolve() / "model") and req["cache_dir"] == str(tmp_path / "data" / ".cache")
    assert AugmentConfig.from_dict(req["augment"]) == PLAIN and req["resume"] is False
    (run / "augment" / "augment.json").unlink()
    with pytest.raises(FileNotFoundError, match="run stages 01 and 02 first"):
        request_from_run(run)
