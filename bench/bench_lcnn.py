"""Parameter count and CPU inference speed of the LCNN against ResNet18 (widths 32 and 16) on 3 s log-mel segments.

Times the networks alone (features precomputed) and with the log-mel front end, eval mode, no gradients,
batches of 16, at `--threads` torch threads; best of 5 passes, as the 2-core machine is shared.
Writes bench/results/lcnn.json.

    .venv/bin/python bench/bench_lcnn.py [--threads 2] [--seconds 8]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from machine import machine  # noqa: E402

from voicelib.audio.features import FeatureConfig, LogMel  # noqa: E402
from voicelib.files import write_json  # noqa: E402
from voicelib.model.config import ModelConfig  # noqa: E402
from voicelib.model.registry import (  # noqa: E402
    build_model,  # noqa: E402
    count_parameters,
)

BATCH = 16
SR = 16000


@torch.no_grad()
def segments_per_second(fn, x: torch.Tensor, *, seconds: float, rounds: int = 5) -> float:
    """Best segments/s of `fn` on batch `x` over `rounds` timed passes (the least disturbed by other users)."""
    fn(x)
    best, deadline = 0.0, time.perf_counter() + seconds
    for _ in range(rounds):
        start = time.perf_counter()
        fn(x)
        best = max(best, x.shape[0] / (time.perf_counter() - start))
        if time.perf_counter() > deadline:
            break
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "lcnn.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    waves = torch.randn(BATCH, 3 * SR) * 0.1
    front = LogMel(FeatureConfig()).eval()
    feats = front(waves)
    models = {"lcnn_width32": build_model(ModelConfig(arch="lcnn", width=32, dropout=0.5), seed=0).eval(),
              "resnet18_width32": build_model(ModelConfig(width=32), seed=0).eval(),
              "lcnn_width16": build_model(ModelConfig(arch="lcnn", width=16, dropout=0.5), seed=0).eval(),
              "resnet18_width16": build_model(ModelConfig.light(), seed=0).eval()}
    results = {}
    for name, model in models.items():
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(feats[:1])
        net = segments_per_second(model, feats, seconds=args.seconds)
        full = segments_per_second(lambda w, m=model: m(front(w)), waves, seconds=args.seconds)
        results[name] = {"parameters": count_parameters(model),
                         "gflop_per_segment": round(counter.get_total_flops() / 1e9, 3),  # load-independent
                         "segments_per_s_network": round(net, 1),
                         "segments_per_s_with_logmel": round(full, 1),
                         "x_realtime_with_logmel": round(full * 3.0, 1)}
        print(name, results[name])
    write_json(args.out, {"machine": machine(), "threads": args.threads,
                          "note": "shared 2-core machine: compare models within one run (same load), not across runs",
                          "segment_seconds": 3.0, "batch": BATCH,
                          "input": "log-mel 80 x 301 (3 s at 16 kHz)", "models": results})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
