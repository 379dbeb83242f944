"""Speed of each detector front end (features.KINDS) on batches of 3 s waves, CPU, best of 5 passes.

Writes bench/results/frontends.json.

    .venv/bin/python bench/bench_frontends.py [--threads 2]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from machine import machine  # noqa: E402

from voicelib.audio.features import KINDS, FeatureConfig, frontend, n_bins  # noqa: E402
from voicelib.files import write_json  # noqa: E402

BATCH = 16
SR = 16000


@torch.no_grad()
def best_seconds(fn, x: torch.Tensor, rounds: int = 5) -> float:
    """Fastest of `rounds` timed calls after a warm-up (the least disturbed by other users)."""
    fn(x)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "frontends.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    waves = torch.randn(BATCH, 3 * SR) * 0.1
    results = {}
    for kind in KINDS:
        cfg = FeatureConfig(kind=kind)
        seconds = best_seconds(frontend(cfg).eval(), waves)
        results[kind] = {"bins": n_bins(cfg), "ms_per_segment": round(seconds / BATCH * 1000, 2),
                         "x_realtime": round(BATCH * 3.0 / seconds, 1)}
        print(kind, results[kind])
    write_json(args.out, {"machine": machine(), "threads": args.threads, "batch": BATCH, "segment_seconds": 3.0,
                          "front_ends": results})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
