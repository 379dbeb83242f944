"""Training benchmarks: throughput (3 s segments/s, features computed in torch inside the timing) and peak
memory per width, and an end-to-end timing that shows decoding is cached (cold vs warm cache).

    python bench/bench_train.py                    # CPU, 2 threads, widths 16/32/64 -> bench/results/train.json
    python bench/bench_train.py --device cuda      # GPU: batch features on the GPU, bf16 autocast
    python bench/bench_train.py --real indic       # train on real speech, then fine-tune in each mode
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import fitting  # noqa: E402  (bench/fitting.py)
import numpy as np
from machine import machine  # noqa: E402  (bench/machine.py, beside this script)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def throughput(width: int, *, device: str, threads: int, batch: int, steps: int, warmup: int) -> dict:
    """Segments per second for forward + backward + AdamW step, log-mel computed inside the timed loop."""
    import torch

    from voicelib.audio.features import LogMel
    from voicelib.model.config import ModelConfig
    from voicelib.model.registry import build_model

    torch.set_num_threads(threads)
    dev = torch.device(device)
    cfg = ModelConfig(width=width)
    model = build_model(cfg, seed=0).to(dev).train()
    frontend = LogMel(cfg.features).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    waves = torch.randn(batch, int(cfg.segment_seconds * cfg.features.sample_rate)).mul(0.1).to(dev)
    target = (torch.arange(batch, device=dev) % 2).float()
    amp = dev.type == "cuda"

    def step():
        with torch.no_grad():
            feats = frontend(waves)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            out = model(feats)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(out["ai"].float(), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    if amp:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if amp:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    result = {"width": width, "device": device, "threads": threads, "batch": batch, "steps": steps,
              "segment_seconds": cfg.segment_seconds, "segments_per_s": round(batch * steps / seconds, 1),
              "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1), "amp_bf16": amp}
    if amp:
        result["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return result


def _toy_manifest(root: Path, *, n: int = 24, seconds: float = 6.0, sr: int = 16000):
    """Generated FLAC clips (two artificial classes) so the epoch timing needs no corpus."""
    import pandas as pd
    import soundfile as sf

    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    rows = []
    for i in range(n):
        label = "ai" if i % 2 else "human"
        wave = (np.sin(2 * np.pi * rng.uniform(100, 200) * t)
                + (0.3 if label == "human" else 0.05) * rng.standard_normal(len(t)))
        path = root / f"clip{i}.flac"
        sf.write(path, (0.1 * wave).astype(np.float32), sr)
        rows.append({"path": str(path), "label": label, "language": "english", "speaker": f"s{i % 8}",
                     "hash": f"{i:016x}", "duration": seconds, "split": "val" if i % 8 in (6, 7) else "train"})
    return pd.DataFrame(rows)


def epoch_timing(*, threads: int, width: int = 16) -> dict:
    """Decode time with a cold and a warm cache, and the epoch times of a 2-epoch fit (no augmentation)."""
    import torch

    from voicelib.audio.augment import AugmentConfig
    from voicelib.audio.cache import AudioCache
    from voicelib.data.dataset import segments_per_epoch
    from voicelib.model.config import ModelConfig

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        frame = _toy_manifest(tmp)
        timings = {}
        for name in ("cold", "warm"):
            cache = AudioCache(tmp / "cache", 16000)
            start = time.perf_counter()
            cache.warm(zip(frame["path"], frame["hash"]), progress=False)
            timings[f"decode_{name}_s"] = round(time.perf_counter() - start, 3)
            timings[f"decoded_{name}"] = cache.decoded
        result = fitting.fit(frame, out_dir=tmp / "model", model_config=ModelConfig(width=width),
                           augment_config=AugmentConfig.none(), epochs=2, batch_size=16, seed=0, device="cpu",
                           cache_dir=tmp / "cache", progress=False)
        seconds = list(result.history["seconds"])
    return {"width": width, "threads": threads, "clips": len(frame), "clip_seconds": 6.0, **timings,
            "epoch_seconds": seconds,
            "segments_per_epoch": segments_per_epoch(frame[frame["split"] == "train"], 3.0)}


def shared_speech() -> Path:
    """The shared corpus (../shared/speech beside the checkout, or $VOICELIB_SHARED_SPEECH)."""
    env = os.environ.get("VOICELIB_SHARED_SPEECH")
    return Path(env) if env else ROOT.parent / "shared" / "speech"


def real_manifest(language: str, *, seed: int, val_fraction: float = 0.3):
    """One language of the shared corpus, read in place, split by speaker (AI voices with one speaker: by group)."""
    import pandas as pd

    from voicelib.files import file_hash

    root = shared_speech()
    frame = pd.read_csv(root / "manifest.csv")
    frame = frame[(frame["language"] == language) & (frame["source"] != "espeak_local")].copy()
    frame["path"] = [str(root / p) for p in frame["path"]]
    frame["hash"] = [file_hash(p) for p in frame["path"]]
    frame["duration"] = frame["duration_s"].astype(float)
    unit = frame["speaker"].replace({"rainbow": "applejack"})  # one actress voices both (README)
    if frame.loc[frame["label"] == "ai", "speaker"].nunique() < 3:  # one TTS voice: split its clips by group
        unit = unit.where(frame["label"] != "ai", frame["group"])
    rng = np.random.default_rng(seed)
    units = np.array(sorted(unit.unique()))
    for _ in range(100):
        val_units = set(rng.choice(units, size=max(int(len(units) * val_fraction), 2), replace=False))
        frame["split"] = np.where(unit.isin(val_units), "val", "train")
        if frame.groupby("split")["label"].nunique().min() == 2:
            return frame.reset_index(drop=True)
    raise RuntimeError(f"{language}: no speaker split with both classes on both sides")


def indic_manifest(*, seed: int, val_fraction: float = 0.3, val_ai_voice: str = "fs2hs_te"):
    """Hindi, Malayalam and Telugu human speech against FastSpeech2-HS; the Telugu TTS voice and ~30% of the
    human speakers (all three languages) are held out for validation, so no voice is on both sides."""
    import pandas as pd

    frames = [real_manifest(lang, seed=seed) for lang in ("hindi", "malayalam", "telugu")]
    frame = pd.concat(frames, ignore_index=True)
    frame = frame[(frame["label"] == "human") | frame["speaker"].str.startswith("fs2hs")].copy()
    rng = np.random.default_rng(seed)
    humans = np.array(sorted(frame.loc[frame["label"] == "human", "speaker"].unique()))
    val_humans = set(rng.choice(humans, size=int(len(humans) * val_fraction), replace=False))
    held_out = frame["speaker"].isin(val_humans) | (frame["speaker"] == val_ai_voice)
    frame["split"] = np.where(held_out, "val", "train")
    return frame.reset_index(drop=True)


def real_check(name: str, *, threads: int, width: int, epochs: int, seed: int, out: Path) -> dict:
    """Train from scratch on a real set (speaker-disjoint), fine-tune from it in each mode.

    For english, also transfer to Hindi.
    """
    import torch

    from voicelib.audio.augment import AugmentConfig
    from voicelib.model.config import ModelConfig

    torch.set_num_threads(threads)
    work = ROOT / "bench" / "out" / f"train_real_{name}"
    cache = work / "cache"
    aug = AugmentConfig(p_codec=0.2, p_time_stretch=0.15, p_pitch_shift=0.15)
    common = dict(augment_config=aug, batch_size=32, lr=2e-3, seed=seed, device="cpu", cache_dir=cache,
                  progress=False, num_workers=0)
    report = {"benchmark": "train_real", "set": name, "machine": machine(), "threads": threads, "width": width,
              "augment": aug.to_dict(), "runs": []}

    def record(run_name, frame, result, started):
        row = {"run": run_name, "val_eer": round(result.best_val_eer, 4), "val_auc": round(result.val_auc, 4),
               "best_epoch": result.best_epoch, "epochs_run": len(result.history),
               "wall_s": round(time.perf_counter() - started, 1),
               "history": result.history.round(4).to_dict(orient="records"),
               "data": {f"{s}_{lab}": int(n) for (s, lab), n in frame.groupby(["split", "label"]).size().items()},
               "val_speakers": sorted(frame.loc[frame["split"] == "val", "speaker"].unique().tolist())}
        report["runs"].append(row)
        print(run_name, {k: row[k] for k in ("val_eer", "val_auc", "best_epoch", "wall_s", "data")}, flush=True)
        out.write_text(json.dumps(report, indent=2) + "\n")

    if name == "indic":  # the main check: an unseen TTS voice and unseen human speakers in validation
        frame = indic_manifest(seed=seed)
        started = time.perf_counter()
        base = fitting.fit(frame, out_dir=work / "indic_scratch", model_config=ModelConfig(width=width), epochs=epochs,
                         mode="scratch", segments_per_epoch=600, **common)
        record("indic scratch", frame, base, started)
        for mode in ("head", "frozen", "full"):
            started = time.perf_counter()
            result = fitting.fit(frame, out_dir=work / f"indic_{mode}", epochs=1, mode=mode, base_model=base.model_dir,
                               segments_per_epoch=600, **common)
            record(f"indic fine-tune {mode} (1 epoch)", frame, result, started)
        return report
    english = real_manifest("english", seed=seed)
    started = time.perf_counter()
    base = fitting.fit(english, out_dir=work / "english_scratch", model_config=ModelConfig(width=width),
                     epochs=epochs, mode="scratch", **common)
    record("english scratch", english, base, started)
    for mode in ("head", "frozen", "full"):
        started = time.perf_counter()
        result = fitting.fit(english, out_dir=work / f"english_{mode}", epochs=1, mode=mode,
                           base_model=base.model_dir, **common)
        record(f"english fine-tune {mode} (1 epoch)", english, result, started)
    hindi = real_manifest("hindi", seed=seed)
    for mode in ("head", "frozen", "full"):
        started = time.perf_counter()
        result = fitting.fit(hindi, out_dir=work / f"hindi_{mode}", epochs=1, mode=mode, base_model=base.model_dir,
                           **common)
        record(f"english->hindi transfer {mode} (1 epoch)", hindi, result, started)
    started = time.perf_counter()
    result = fitting.fit(hindi, out_dir=work / "hindi_scratch", model_config=ModelConfig(width=width), epochs=1,
                       mode="scratch", **common)
    record("hindi scratch (1 epoch, reference for transfer)", hindi, result, started)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--widths", default="16,32,64")
    parser.add_argument("--threads", default="2,1")
    parser.add_argument("--batch", type=int, default=0, help="0: 32 on CPU, 256 on GPU")
    parser.add_argument("--steps", type=int, default=0, help="0: 5 on CPU, 50 on GPU")
    parser.add_argument("--one", default="", help=argparse.SUPPRESS)  # internal: width,threads in a fresh process
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "train.json"))
    parser.add_argument("--real", choices=["indic", "english"], help="real-data check on ../shared/speech")
    parser.add_argument("--epochs", type=int, default=6, help="--real: epochs of the English scratch run")
    args = parser.parse_args()
    if args.real:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        suffix = "" if args.real == "indic" else f"_{args.real}"
        real_check(args.real, threads=1, width=16, epochs=args.epochs, seed=0,
                   out=ROOT / "bench" / "results" / f"train_real{suffix}.json")
        return
    gpu = args.device.startswith("cuda")
    batch, steps = args.batch or (256 if gpu else 32), args.steps or (50 if gpu else 5)
    if args.one:
        width, threads = (int(x) for x in args.one.split(","))
        print(json.dumps(throughput(width, device=args.device, threads=threads, batch=batch, steps=steps,
                                    warmup=5 if gpu else 1)))
        return
    runs = []
    for threads in ([1] if gpu else [int(t) for t in args.threads.split(",")]):
        for width in (int(w) for w in args.widths.split(",")):
            # a fresh process per setting so that peak RSS belongs to that setting alone
            cmd = [sys.executable, __file__, "--one", f"{width},{threads}", "--device", args.device,
                   "--batch", str(batch), "--steps", str(steps)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            runs.append(json.loads(out))
            print(runs[-1], flush=True)
    report = {"benchmark": "train", "machine": machine(args.device), "throughput": runs,
              "note": "segments of 3 s; forward + backward + AdamW step with log-mel computed inside the timing"}
    if not gpu:
        report["epoch_timing"] = epoch_timing(threads=1)
        print(report["epoch_timing"])
    out = Path(args.out if not gpu else str(args.out).replace("train.json", "train_gpu.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
