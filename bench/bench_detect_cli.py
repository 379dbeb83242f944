"""Whole-process cost of `python -m voicelib detect`: wall time and peak RSS for one 5 s file and 26 minutes of speech.

Usage: .venv/bin/python bench/bench_detect_cli.py [--repeats 5] [--minutes 26] [--out bench/results/detect_cli.json]
Each run is a fresh interpreter (imports, model load, decoding, scoring, output), as a user pays it; its wall time,
CPU time (user + system, all threads: the figure to compare on a busy machine) and peak RSS (VmHWM). The model is a
freshly initialised detector of the default CPU configuration (bench_detect.fresh_model_dir); the first run on it
is reported apart (it may store the exported ONNX graph), then `--repeats` runs give the median and minimum. The
5 s file is cut from a real clip of ../shared/speech into a temporary folder; the 26-minute folder holds symbolic
links to corpus clips (no audio is copied into the repository). Targets: 1.5 s and 300 MB for one file, 4 s for
the folder, on two cores.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import soundfile as sf  # noqa: E402
from bench_detect import SHARED, fresh_model_dir  # noqa: E402  (bench/, beside this script)
from machine import machine  # noqa: E402

from voicelib.files import write_json  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "librosa", "numba", "pandas", "scipy", "onnxruntime", "sklearn")
# runs in the child: the CLI's own main(), then the peak RSS (VmHWM) and which heavy packages it loaded
PROBE = """
import json, re, sys, time
t0 = time.perf_counter()
from voicelib.__main__ import main
t1 = time.perf_counter()
code = main(sys.argv[1:])
t2 = time.perf_counter()
peak = int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
loaded = [m for m in HEAVY if m in sys.modules]
print("PROBE " + json.dumps({"code": code, "import_s": t1 - t0, "main_s": t2 - t1, "peak_kb": peak,
                             "loaded": loaded, "voicelib": sys.modules["voicelib"].__file__}), file=sys.stderr)
"""
TARGETS = {"one_file": {"wall_s": 1.5, "peak_mb": 300}, "folder": {"wall_s": 4.0}}


def five_second_clip(out: Path) -> tuple[Path, str]:
    """The first 5 s of the first corpus clip (manifest order) at least that long, written as WAV under `out`."""
    df = pd.read_csv(SHARED / "manifest.csv")
    row = df[df["duration_s"] >= 5.0].iloc[0]
    wave, sr = sf.read(SHARED / row["path"], dtype="float32", frames=5 * 16000)
    path = out / "one_5s.wav"
    sf.write(path, wave[: 5 * sr], sr)
    return path, str(row["path"])


def speech_folder(out: Path, minutes: float) -> tuple[Path, int, float]:
    """Links to corpus clips (every language and label, shuffled with seed 0) until `minutes` of speech."""
    df = pd.read_csv(SHARED / "manifest.csv").sample(frac=1.0, random_state=0)
    folder, total, n = out / "speech", 0.0, 0
    folder.mkdir()
    for path, dur in zip(df["path"], df["duration_s"]):
        if total >= minutes * 60:
            break
        (folder / f"{n:04d}{Path(path).suffix}").symlink_to(SHARED / path)
        total, n = total + float(dur), n + 1
    return folder, n, total


def run_cli(args: list[str]) -> dict:
    """One fresh interpreter running the CLI; wall and CPU time from outside, the rest from the probe."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", f"HEAVY = {HEAVY!r}\n{PROBE}", *args], capture_output=True,
                          text=True, cwd=REPO, env=env, timeout=600)
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    line = next((x for x in proc.stderr.splitlines() if x.startswith("PROBE ")), None)
    if line is None:
        raise RuntimeError(f"the CLI failed (exit {proc.returncode}): {proc.stderr[-800:]}")
    probe = json.loads(line[len("PROBE "):])
    if not Path(probe["voicelib"]).is_relative_to(REPO):
        raise RuntimeError(f"the CLI ran {probe['voicelib']}, not the checkout {REPO}")
    results = json.loads(proc.stdout)
    return {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "import_s": round(probe["import_s"], 3),
            "main_s": round(probe["main_s"], 3), "peak_mb": round(probe["peak_kb"] / 1024, 1),
            "exit_code": probe["code"], "files": len(results), "failed": sum("error" in r for r in results),
            "loaded": probe["loaded"]}


def measure(args: list[str], repeats: int) -> dict:
    """The first run apart, then the median and minimum of `repeats` runs (and the load average around them)."""
    first = run_cli(args)
    load = os.getloadavg()[0]
    runs = [run_cli(args) for _ in range(repeats)]
    keys = ("wall_s", "cpu_s", "import_s", "main_s", "peak_mb")
    summary = {key: {"median": round(statistics.median(r[key] for r in runs), 3),
                     "min": round(min(r[key] for r in runs), 3)} for key in keys}
    return {"first_run": first, **summary, "files": runs[-1]["files"], "failed": runs[-1]["failed"],
            "loaded": runs[-1]["loaded"], "runs": [r["wall_s"] for r in runs],
            "load_average_1min": [round(load, 2), round(os.getloadavg()[0], 2)]}


def revision() -> str:
    """The git revision measured, with -dirty when the working tree has uncommitted changes."""
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                           cwd=REPO).stdout.strip()
    return rev.strip() + ("-dirty" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs after the first (default 5)")
    parser.add_argument("--minutes", type=float, default=26.0, help="speech in the folder (default 26)")
    parser.add_argument("--backend", default="auto", choices=["auto", "torch", "onnx"])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "detect_cli.json"))
    parser.add_argument("--revision", help="revision to record (default: this checkout's git revision)")
    args = parser.parse_args()
    if not (SHARED / "manifest.csv").is_file():
        sys.exit(f"shared speech corpus not found at {SHARED}; set VOICELIB_SHARED_SPEECH")
    np.random.seed(0)
    record = {"revision": args.revision or revision(), "machine": machine("cpu"), "backend": args.backend,
              "targets": TARGETS}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = fresh_model_dir(tmp / "model")
        clip, source = five_second_clip(tmp)
        folder, n_files, seconds = speech_folder(tmp, args.minutes)
        common = ["--model", str(model), "--backend", args.backend]
        record["model"] = "fresh ModelConfig.light(width=16), front end logmel (bench_detect.fresh_model_dir)"
        record["one_file"] = {"clip": f"first 5 s of {source}", **measure(["detect", str(clip), *common],
                                                                           args.repeats)}
        record["folder"] = {"clips": n_files, "audio_seconds": round(seconds, 1),
                            **measure(["detect", str(folder), *common], args.repeats)}
        record["model_dir_files"] = sorted(p.name for p in model.iterdir())
    write_json(args.out, record)
    one, folder = record["one_file"], record["folder"]
    print(f"one 5 s file: {one['wall_s']['median']} s (median), {one['peak_mb']['median']} MB peak; "
          f"{folder['audio_seconds'] / 60:.1f} min in {folder['clips']} files: {folder['wall_s']['median']} s, "
          f"{folder['peak_mb']['median']} MB; wrote {args.out}")


if __name__ == "__main__":
    main()
