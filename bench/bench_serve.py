"""Load test of `python -m voicelib serve` on loopback, and streaming speed and memory of a 3-hour file via the CLI.

Usage: .venv/bin/python bench/bench_serve.py [--model DIR] [--clients 16] [--seconds 60] [--hours 3]
Without --model a freshly initialised detector of the default CPU width (ModelConfig.light, width 16) is used:
speed and memory do not depend on the weights. Clips come from ../shared/speech when present (else noise).
Writes bench/results/serve.json.
"""
from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
from machine import machine  # noqa: E402  (bench/machine.py, beside this script)

from voicelib.audio import decode
from voicelib.files import write_json  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VOICELIB_SHARED_SPEECH", REPO.parent / "shared" / "speech"))
KEY = "bench-key"
PEAK_PROBE = """
import re, sys
from voicelib.__main__ import main
code = main(sys.argv[1:])
status = open("/proc/self/status").read()
print("VMHWM_KB", re.search(r"VmHWM:\\s+(\\d+)", status).group(1), "CODE", code, file=sys.stderr)
"""


def speech(seconds: float, sr: int = 16000) -> np.ndarray:
    """About `seconds` of real speech from the shared corpus at `sr` (noise when the corpus is absent)."""

    manifest = SHARED / "manifest.csv"
    if not manifest.is_file():
        return (0.1 * np.random.default_rng(0).standard_normal(int(seconds * sr))).astype(np.float32)
    import pandas as pd

    rows, parts, total = pd.read_csv(manifest).sample(frac=1.0, random_state=0), [], 0.0
    for path in rows["path"]:
        parts.append(decode.load(SHARED / path, sr=sr))
        total += len(parts[-1]) / sr
        if total >= seconds:
            break
    return np.concatenate(parts)[: int(seconds * sr)]


def model_dir(args: argparse.Namespace, tmp: Path) -> tuple[Path, str]:
    """The model to serve, registered as the english model of a store in tmp; returns (store root, description)."""
    from voicelib.model import store
    from voicelib.model.config import ModelConfig
    from voicelib.model.registry import build_model

    if args.model:
        source, what = Path(args.model), str(args.model)
    else:
        cfg = ModelConfig.light()
        source = store.save_model(build_model(cfg, seed=0), tmp / "fresh", config={
            "model": cfg.to_dict(), "threshold": 0.0, "calibration": {"a": 1.0, "b": 0.0}})
        what = "fresh ModelConfig.light() (width 16, untrained: speed and memory only)"
    store.register(source, root=tmp / "models", language="english", promote=True)
    return tmp / "models", what


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    return int(re.search(rf"{field}:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1))


def load_test(root: Path, clip: bytes, args: argparse.Namespace, tmp: Path) -> dict:
    """Run the server and `clients` threads posting the clip for `seconds`; latency, throughput, errors, RSS."""
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, VOICELIB_API_KEYS=KEY, PYTHONPATH=str(REPO))
    log = (tmp / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "voicelib", "serve", "--port", str(port), "--models-root", str(root),
                             "--workers", "2", "--queue-limit", str(args.clients)], env=env, cwd=REPO,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        post = lambda c: c.post(url + "/audio/analyze-audio", files={"file": ("clip.wav", clip)},  # noqa: E731
                                headers={"x-api-key": KEY}, timeout=120)
        with httpx.Client() as c:
            for _ in range(4):
                post(c)  # warm-up
        rss_start = rss_kb(proc.pid)
        latencies, errors, lock, stop = [], [], threading.Lock(), time.perf_counter() + args.seconds

        def client() -> None:
            with httpx.Client() as c:
                while time.perf_counter() < stop:
                    t0 = time.perf_counter()
                    try:
                        code = post(c).status_code
                    except httpx.HTTPError as exc:
                        code = type(exc).__name__
                    with lock:
                        (latencies if code == 200 else errors).append(time.perf_counter() - t0 if code == 200 else code)

        start = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
        rss_end, rss_peak = rss_kb(proc.pid), rss_kb(proc.pid, "VmHWM")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [float("nan")] * 99
    return {"clients": args.clients, "seconds": round(elapsed, 1), "clip_seconds": args.clip,
            "endpoint": "/audio/analyze-audio",
            "requests_ok": len(latencies), "errors": len(errors), "error_kinds": sorted(set(map(str, errors))),
            "requests_per_second": round(len(latencies) / elapsed, 2),
            "audio_x_real_time": round(len(latencies) * args.clip / elapsed, 1),
            "latency_p50_s": round(q[49], 3), "latency_p99_s": round(q[98], 3),
            "server_rss_mb_start": round(rss_start / 1024, 1), "server_rss_mb_end": round(rss_end / 1024, 1),
            "server_peak_rss_mb": round(rss_peak / 1024, 1), "workers": 2, "queue_limit": args.clients}


def stream_test(root: Path, wave: np.ndarray, args: argparse.Namespace, tmp: Path) -> dict:
    """Write an `hours`-long FLAC block by block and score it with the CLI; wall time and peak RSS."""
    from voicelib.model import store

    path, sr, total = tmp / "long.flac", 16000, int(args.hours * 3600 * 16000)
    with sf.SoundFile(path, "w", sr, 1, format="FLAC", subtype="PCM_16") as out:
        written = 0
        while written < total:
            part = wave[: total - written]
            out.write(part)
            written += len(part)
    cmd = [sys.executable, "-c", PEAK_PROBE, "detect", str(path), "--model", str(store.current("english", root=root)),
           "--format", "csv"]
    t0, c0 = time.perf_counter(), os.times()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
    wall, c1 = time.perf_counter() - t0, os.times()
    peak_kb, code = (int(v) for v in proc.stderr.split("VMHWM_KB")[1].split()[::2])
    duration = float(proc.stdout.splitlines()[1].split(",")[7])
    cpu = (c1.children_user - c0.children_user) + (c1.children_system - c0.children_system)
    return {"hours": args.hours, "file_mb": round(path.stat().st_size / 2**20, 1), "format": "FLAC 16 kHz PCM_16",
            "exit_code": code, "scored_seconds": duration, "chunks": int(proc.stdout.splitlines()[1].split(",")[8]),
            "wall_seconds": round(wall, 1), "x_real_time": round(duration / wall, 1), "cpu_seconds": round(cpu, 1),
            "x_real_time_per_2_cores_of_cpu": round(2 * duration / cpu, 1), "peak_rss_mb": round(peak_kb / 1024, 1),
            "command": "python -m voicelib detect long.flac --model DIR --format csv (process startup included)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model directory (default: a fresh width-16 detector)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clip", type=float, default=5.0, help="clip length in seconds")
    parser.add_argument("--hours", type=float, default=3.0)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "serve.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        tmp = Path(tmp)
        root, what = model_dir(args, tmp)
        wave = speech(60.0)
        buffer = tmp / "clip.wav"
        sf.write(buffer, wave[: int(args.clip * 16000)], 16000, subtype="PCM_16")
        record = {"model": what, "machine": machine()}
        record["load_test"] = load_test(root, buffer.read_bytes(), args, tmp)
        print(record["load_test"], flush=True)
        record["streaming"] = stream_test(root, wave, args, tmp)
        print(record["streaming"], flush=True)
    record["note"] = ("the machine is shared: compare the load average at start; the streaming run includes process "
                      "start and model load; peak RSS is the process's VmHWM")
    write_json(args.out, record)


if __name__ == "__main__":
    main()
