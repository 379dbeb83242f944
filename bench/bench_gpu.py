"""The GPU path in one short run (< 8 minutes): training and detection throughput, and a Hindi pipeline run.

NOT YET RUN ON A GPU: written and tested on CPU only (`--device cpu --quick`); the first GPU run is its test.

    python bench/bench_gpu.py --device cuda                       # bench/results/gpu_<device name>.json
    python bench/bench_gpu.py --device cpu --quick                # tiny sizes: checks the script on CPU
    python bench/bench_gpu.py --device cuda --data-dir ../shared/speech --compile

What it measures (three-second segments, the model of the pipeline's default architecture, width 32):
1. training steps on cached audio: decoded clips held on the device, random 3 s crops, the log-mel front end
   on the device, bf16 autocast, forward + backward + AdamW; segments/s, and the share of the GPU's bf16 dense
   peak from the FLOPs of one step (torch.utils.flop_counter; a backward costs about twice a forward);
2. `fit` end to end on a generated manifest (decoding cache, CPU augmentation, DataLoader): what a
   real epoch reaches, which is bounded by the CPU side rather than the GPU;
3. detection (`detect_paths`) over generated files: times real time and segments/s, decoding included;
4. `run_pipeline.py --language hindi --device <device>` on `--data-dir` (skipped, and said so, without one).
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
from machine import machine  # noqa: E402  (bench/machine.py, beside this script)

from voicelib.files import write_json  # noqa: E402

SR, SEGMENT = 16000, 3.0
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "GH200": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12,
             "A10": 125e12, "RTX 4090": 165e12}  # dense bf16 tensor FLOP/s (vendor figures, no sparsity)
SIZES = {"quick": dict(batch=8, steps=3, warmup=1, clips=16, fit_clips=8, files=4, file_seconds=8.0, timeout=900),
         "full": dict(batch=512, steps=60, warmup=10, clips=2048, fit_clips=512, files=120, file_seconds=30.0,
                      timeout=300)}


def peak_flops(name: str | None) -> float | None:
    """The dense bf16 peak of a GPU named like `name` (None when unknown or on CPU)."""
    for key, value in PEAK_BF16.items():
        if name and key in name:
            return value
    return None


def step_flops(model, frontend, waves) -> float:
    """FLOPs of one training step (front end, forward, backward) on the batch `waves`."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        with torch.no_grad():
            feats = frontend(waves)
        model(feats)["ai"].float().sum().backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def train_steps(*, device: str, batch: int, steps: int, warmup: int, clips: int, compile_model: bool) -> dict:
    """Segments/s of training steps on device-resident cached audio (random crops), log-mel on the device, bf16."""
    import torch

    from voicelib.audio.features import frontend as make_frontend
    from voicelib.model.config import ModelConfig
    from voicelib.model.registry import build_model

    dev = torch.device(device)
    cfg = ModelConfig(width=32)
    n = int(cfg.segment_seconds * cfg.features.sample_rate)
    gen = torch.Generator(device="cpu").manual_seed(0)
    bank = (0.1 * torch.randn(clips, 2 * n, generator=gen)).to(dev)  # the decoded-audio cache, 6 s clips
    labels = (torch.arange(clips, device=dev) % 2).float()
    model = build_model(cfg, seed=0).to(dev).train()
    frontend = make_frontend(cfg.features).to(dev)
    flops = step_flops(model, frontend, bank[:batch, :n]) / batch
    net = torch.compile(model) if compile_model else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=dev.type == "cuda")

    def step() -> None:
        idx = torch.randint(0, clips, (batch,), device=dev)
        start = torch.randint(0, n, (batch, 1), device=dev) + torch.arange(n, device=dev)
        waves = bank[idx.unsqueeze(1), start]
        with torch.no_grad():
            feats = frontend(waves)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            out = net(feats)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(out["ai"].float(), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    sync()
    began = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    seconds = time.perf_counter() - began
    rate = batch * steps / seconds
    gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else None
    peak = peak_flops(gpu)
    return {"segments_per_s": round(rate, 1), "batch": batch, "steps": steps, "seconds": round(seconds, 3),
            "width": cfg.width, "segment_seconds": cfg.segment_seconds, "bf16": dev.type == "cuda",
            "compiled": compile_model, "flops_per_segment": flops, "achieved_tflops": round(rate * flops / 1e12, 2),
            "peak_bf16_tflops": peak / 1e12 if peak else None,
            "share_of_peak": round(rate * flops / peak, 4) if peak else None, "target_segments_per_s": 20_000,
            "peak_memory_gb": round(torch.cuda.max_memory_allocated(dev) / 1e9, 2) if dev.type == "cuda" else None}


def write_clips(folder: Path, n: int, seconds: float) -> list[Path]:
    """`n` generated clips: harmonic 'speech-like' tones, half with noise and tremolo (two separable classes)."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SR)) / SR
    paths = []
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        f0 = rng.uniform(90, 240)
        wave = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
        if i % 2 == 0:
            wave = wave * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.3 * rng.standard_normal(len(t))
        paths.append(folder / f"clip{i:04d}.flac")
        sf.write(paths[-1], (0.1 * wave / np.abs(wave).max()).astype(np.float32), SR)
    return paths


def fit_epoch(tmp: Path, *, device: str, clips: int) -> dict:
    """One epoch of fit on generated clips (decoded once into the cache first): segments/s end to end."""
    import pandas as pd

    from voicelib.files import read_json
    from voicelib.model.config import ModelConfig
    from voicelib.training.config import TrainConfig
    from voicelib.training.fit import fit

    paths = write_clips(tmp / "fit", clips, 6.0)
    rows = [{"path": str(p), "label": "human" if i % 2 == 0 else "ai", "language": "hindi", "speaker": f"s{i % 8}",
             "hash": f"h{i:05d}", "duration": 6.0, "split": "val" if i % 8 >= 6 else "train"}
            for i, p in enumerate(paths)]
    manifest = pd.DataFrame(rows)
    options = dict(model_config=ModelConfig(width=32), device=device, progress=False, cache_dir=tmp / "cache")
    cfg = TrainConfig(epochs=1, batch_size=min(256, 2 * clips), num_workers=4 if device != "cpu" else 0)
    began = time.perf_counter()
    result = fit(manifest, cfg, out_dir=tmp / "fit_model", **options)
    total = time.perf_counter() - began
    epoch = float(result.history["seconds"].iloc[0])
    segments = int(read_json(result.model_dir / "config.json")["training"]["segments_per_epoch"])
    return {"clips": clips, "segments": segments, "epoch_seconds": round(epoch, 2), "fit_seconds": round(total, 2),
            "segments_per_s": round(segments / epoch, 1), "num_workers": cfg.num_workers,
            "note": "epoch time includes validation; CPU augmentation and the DataLoader bound this figure"}


def detection(tmp: Path, *, device: str, files: int, file_seconds: float) -> dict:
    """detect_paths over generated files with a fresh width-32 detector: times real time, segments/s."""
    from voicelib.model.config import ModelConfig
    from voicelib.model.registry import build_model
    from voicelib.model.saving import save_model
    from voicelib.scoring.load import load_detector
    from voicelib.scoring.paths import detect_paths

    paths = [str(p) for p in write_clips(tmp / "detect", files, file_seconds)]
    cfg = ModelConfig(width=32)
    model_dir = save_model(build_model(cfg, seed=0), tmp / "detector",
                           config={"model": cfg.to_dict(), "threshold": 0.0, "calibration": {"a": 1.0, "b": 0.0}})
    detector = load_detector(model_dir, device=device)
    detect_paths(paths[:2], detector)  # warm-up
    began = time.perf_counter()
    results, failed = detect_paths(paths, detector, chunk_duration=SEGMENT, overlap=0.5)
    seconds = time.perf_counter() - began
    chunks = sum(len(r.get("chunks", [])) for r in results)
    audio = files * file_seconds
    return {"files": files, "failed": failed, "audio_seconds": audio, "seconds": round(seconds, 3),
            "x_real_time": round(audio / seconds, 1), "segments_per_s": round(chunks / seconds, 1),
            "backend": detector.backend, "note": "decoding included; fresh (untrained) weights cost the same"}


def pipeline(tmp: Path, *, device: str, data_dir: str | None, quick: bool, timeout: int) -> dict:
    """run_pipeline.py for Hindi on `data_dir` with --device; wall time and each stage's status."""
    if not data_dir or not Path(data_dir, "hindi").is_dir():
        return {"skipped": f"no Hindi recordings at {data_dir!r}; pass --data-dir DIR with DIR/hindi/{{human,ai}}/"}
    from voicelib.files import read_json

    extra = ["--smoke"] if quick else ["--limit", "100", "--epochs", "3", "--workers", "0"]
    command = [sys.executable, str(ROOT / "run_pipeline.py"), "--language", "hindi", "--device", device,
               "--data-dir", str(data_dir), "--reports-dir", str(tmp / "reports"), "--quiet", *extra]
    began = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"command": " ".join(command[1:]), "timed_out_after_s": timeout}
    seconds = time.perf_counter() - began
    found = re.search(r"^run \S+: .* in (\S+)$", done.stdout, flags=re.MULTILINE)
    path = Path(found.group(1)) / "stages.json" if found else None
    stages = read_json(path)["stages"] if path and path.is_file() else {}
    return {"command": " ".join(command[1:]), "returncode": done.returncode, "seconds": round(seconds, 1),
            "stages": {k: {"status": v.get("status"), "seconds": v.get("duration_s")} for k, v in stages.items()},
            "stderr_tail": done.stderr[-600:] if done.returncode else ""}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (the point of it) or cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a check of the script, no figures")
    parser.add_argument("--compile", action="store_true", help="also time the training steps with torch.compile")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "speech"), help="recordings for step 4")
    parser.add_argument("--out", help="result JSON (default bench/results/gpu_<device>.json)")
    args = parser.parse_args()
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device visible; use --device cpu --quick to check the script")
    if args.device == "cpu":
        torch.set_num_threads(2)
    size = SIZES["quick" if args.quick else "full"]
    steps = dict(batch=size["batch"], steps=size["steps"], warmup=size["warmup"], clips=size["clips"])
    result = {"quick": args.quick, "device": args.device, "machine": machine(args.device)}
    name = result["machine"]["gpu"] or "cpu"
    result["train_steps"] = train_steps(device=args.device, compile_model=False, **steps)
    if args.compile:
        result["train_steps_compiled"] = train_steps(device=args.device, compile_model=True, **steps)
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        result["train_fit"] = fit_epoch(tmp, device=args.device, clips=size["fit_clips"])
        result["detect"] = detection(tmp, device=args.device, files=size["files"], file_seconds=size["file_seconds"])
        result["pipeline"] = pipeline(tmp, device=args.device, data_dir=args.data_dir, quick=args.quick,
                                      timeout=size["timeout"])
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") + ("_quick" if args.quick else "")
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / f"gpu_{slug}.json"
    write_json(out, result)
    steps_rate = result["train_steps"]["segments_per_s"]
    print(f"{name}: training {steps_rate} segments/s (share of peak {result['train_steps']['share_of_peak']}), "
          f"fit {result['train_fit']['segments_per_s']} segments/s, detection {result['detect']['x_real_time']}x "
          f"real time; pipeline {result['pipeline'].get('seconds', result['pipeline'])}; wrote {out}")


if __name__ == "__main__":
    main()
