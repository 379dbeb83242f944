"""Detection speed in multiples of real time over >= 1 hour of ../shared/speech (decoding included).

Usage: .venv/bin/python bench/bench_detect.py [--model DIR] [--device cpu|cuda] [--threads 2] [--minutes 60]
Without --model a freshly initialised detector of the default CPU width (ModelConfig.light) is used: the
network cost does not depend on the weights. Writes bench/results/detect.json (detect_cuda.json on GPU).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import pandas as pd  # noqa: E402
from machine import machine  # noqa: E402  (bench/machine.py, beside this script)

from voicelib.audio import decode
from voicelib.audio.features import PRESETS  # noqa: E402
from voicelib.files import write_json  # noqa: E402

SHARED = Path(os.environ.get("VOICELIB_SHARED_SPEECH", Path(__file__).resolve().parents[2] / "shared" / "speech"))


def pick_files(minutes: float) -> tuple[list[str], float]:
    """Every language and label in manifest order, cycling through the corpus until `minutes` are reached."""
    df = pd.read_csv(SHARED / "manifest.csv")
    df = df.sample(frac=1.0, random_state=0)  # mix sources so batches are not all one kind
    files, total = [], 0.0
    while total < minutes * 60:
        for path, dur in zip(df["path"], df["duration_s"]):
            files.append(str(SHARED / path))
            total += float(dur)
            if total >= minutes * 60:
                break
    return files, total


def fresh_model_dir(out: Path, *, width: int = 16, preprocess: str = "none", front_end: str = "logmel") -> Path:
    """Save an untrained detector of this width, preprocessing (none, silero or energy) and front end."""
    from voicelib.model.config import ModelConfig
    from voicelib.model.registry import build_model
    from voicelib.model.saving import save_model

    extra = {} if preprocess == "none" else {"preprocess": {"vad_backend": preprocess}}
    cfg = ModelConfig.from_dict({**ModelConfig.light().to_dict(), "width": width, "features": front_end, **extra})
    return save_model(build_model(cfg, seed=0), out, config={"model": cfg.to_dict(), "threshold": 0.0,
                                                             "calibration": {"a": 1.0, "b": 0.0}})


def run(args: argparse.Namespace) -> dict:
    """Time detect_paths over the files and return the result record."""
    import torch

    from voicelib.scoring.load import load_detector
    from voicelib.scoring.paths import detect_paths

    torch.set_num_threads(args.threads)
    files, total = pick_files(args.minutes)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = (Path(args.model) if args.model else
                     fresh_model_dir(Path(tmp) / "model", width=args.width, preprocess=args.preprocess,
                                     front_end=args.front_end))
        detector = load_detector(model_dir, device=args.device, backend=args.backend)
        detect_paths(files[:8], detector)  # warm-up: allocator, oneDNN kernels
        start, cpu_start = time.perf_counter(), time.process_time()
        results, n_failed = detect_paths(files, detector, chunk_duration=3.0, overlap=0.5,
                                         files_per_batch=args.files_per_batch)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    t0 = time.perf_counter()
    for f in files[: len(files) // 4]:
        decode.load(f)
    decode_s = (time.perf_counter() - t0) * len(files) / max(len(files) // 4, 1)
    n_chunks = sum(len(r.get("chunks", [])) for r in results)
    return {"device": args.device, "threads": args.threads,
            "model": str(args.model or f"fresh ModelConfig.light(width={args.width}), preprocess {args.preprocess}, "
                                       f"front end {args.front_end}"),
            "files": len(files), "failed": n_failed, "audio_seconds": round(total, 1), "chunks": n_chunks,
            "chunk_duration": 3.0, "overlap": 0.5, "files_per_batch": args.files_per_batch,
            "backend": detector.backend, "wall_seconds": round(elapsed, 2), "x_real_time": round(total / elapsed, 1),
            "x_real_time_by_cpu": round(total / (cpu / args.threads), 1),
            "cpu_seconds": round(cpu, 2), "note": "the machine is shared: compare wall with cpu_seconds / threads and "
            "the load average; wall time is the figure to quote",
            "decode_only_seconds_estimate": round(decode_s, 2), "target_x_real_time_cpu": 200,
            "machine": machine(args.device)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="trained model directory (default: fresh width-16 detector)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--files-per-batch", type=int, default=16)
    parser.add_argument("--backend", default="auto", choices=["auto", "torch", "onnx"])
    parser.add_argument("--width", type=int, default=16, help="width of the fresh detector (the pipeline trains 32)")
    parser.add_argument("--preprocess", default="none", choices=["none", "silero", "energy"],
                        help="the fresh detector's preprocessing (VAD trim, loudness, dither)")
    parser.add_argument("--front-end", default="logmel", choices=list(PRESETS),
                        help="the fresh detector's front end (linear80: linear bins pooled onto 80 bands)")
    parser.add_argument("--out", default=None, help="result JSON (default bench/results/detect[_cuda].json)")
    args = parser.parse_args()
    if not (SHARED / "manifest.csv").is_file():
        sys.exit(f"shared speech corpus not found at {SHARED}; set VOICELIB_SHARED_SPEECH")
    result = run(args)
    name = f"detect{'' if args.device == 'cpu' else '_cuda'}{'' if args.backend == 'auto' else '_' + args.backend}.json"
    out = Path(args.out) if args.out else Path(__file__).resolve().parent / "results" / name
    write_json(out, result)
    print(f"{result['x_real_time']}x real time ({result['audio_seconds'] / 60:.1f} min of audio in "
          f"{result['wall_seconds']} s, {args.threads} threads, {args.device}); wrote {out}")


if __name__ == "__main__":
    main()
