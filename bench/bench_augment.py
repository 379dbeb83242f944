"""Cost of each wave augmentation and of the whole Augmenter (default vs channel_robust) on 3.6 s segments.

A 3.6 s crop is what data.SegmentDataset augments for a 3 s segment (STRETCH_MARGIN 1.2). Speech from
../shared/speech when present (else espeak-ng). Writes bench/results/augment.json.

    .venv/bin/python bench/bench_augment.py [--repeats 20]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from machine import machine  # noqa: E402

from voicelib.audio import (  # noqa: E402
    augment,  # noqa: E402
    decode,
    dsp,
)
from voicelib.files import write_json  # noqa: E402

SR = 16000
SEGMENT = int(3.6 * SR)


def segments(n: int) -> list[np.ndarray]:
    """`n` 3.6 s crops of real speech (shared corpus) or of espeak-ng speech."""
    shared = sorted((HERE.parents[1] / "shared" / "speech" / "english").rglob("*.flac"))
    if shared:
        waves = [decode.load(p) for p in shared[:: max(len(shared) // n, 1)][:n]]
    else:
        from voicelib.data import espeak

        wave, rate = espeak.synthesize("The quick brown fox jumps over the lazy dog.", language="en")
        waves = [dsp.resample(wave, rate, SR)] * n
    return [augment.random_crop(w, SR, np.random.default_rng(i), seconds=3.6) for i, w in enumerate(waves)]


def ms_per_call(fn, waves: list[np.ndarray]) -> float:
    """Mean milliseconds per segment."""
    start = time.perf_counter()
    for i, w in enumerate(waves):
        fn(w, SR, np.random.default_rng(i))
    return (time.perf_counter() - start) / len(waves) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "augment.json")
    args = parser.parse_args()
    waves = segments(args.repeats)
    per = {name: round(ms_per_call(fn, waves), 1)
           for name, fn in {**augment.TRANSFORMS, **augment.CHANNEL_TRANSFORMS}.items()}
    per["codec_mulaw"] = round(ms_per_call(lambda w, sr, r: augment.codec(w, sr, r, formats=("mulaw",)), waves), 1)
    per["codec_mp3_16kbps"] = round(ms_per_call(
        lambda w, sr, r: augment.codec(w, sr, r, formats=("mp3",), bitrates_kbps=(16,)), waves), 1)
    whole = {}
    configs = {"default": augment.AugmentConfig(), "channel_robust": augment.AugmentConfig.channel_robust()}
    for name, cfg in configs.items():
        ms = ms_per_call(augment.Augmenter(cfg), waves)
        whole[name] = {"ms_per_segment": round(ms, 1), "segments_per_s_one_core": round(1000 / ms, 1)}
    print(per, whole)
    write_json(args.out, {"machine": machine(), "segment_seconds": 3.6, "segments": len(waves),
                          "ms_per_segment_by_transform": per, "augmenter": whole})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
