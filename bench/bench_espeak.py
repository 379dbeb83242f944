"""Benchmark espeak-ng synthesis speed per language (x real time, sentences/s); writes bench/results/espeak.json."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from machine import machine  # noqa: E402  (bench/machine.py, beside this script)

from voicelib.data import espeak  # noqa: E402
from voicelib.data.sources.clips import prompts  # noqa: E402
from voicelib.files import write_json  # noqa: E402
from voicelib.languages import LANGUAGES  # noqa: E402


def bench_language(code: str, *, n: int) -> dict:
    """Synthesise the first `n` prompts of a language and time it (one warm-up call first)."""
    texts = prompts(code)[:n]
    espeak.synthesize(texts[0], language=code)
    seconds_audio, start = 0.0, time.perf_counter()
    for text in texts:
        wave, sr = espeak.synthesize(text, language=code)
        seconds_audio += len(wave) / sr
    elapsed = time.perf_counter() - start
    return {"sentences": len(texts), "audio_seconds": round(seconds_audio, 2), "wall_seconds": round(elapsed, 3),
            "x_real_time": round(seconds_audio / elapsed, 1), "sentences_per_second": round(len(texts) / elapsed, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sentences", type=int, default=40, help="prompts per language")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "espeak.json")
    args = parser.parse_args()
    results = {code: bench_language(code, n=args.sentences) for code in LANGUAGES.values()}
    for code, r in results.items():
        print(f"{code}: {r['x_real_time']:6.1f} x real time, {r['sentences_per_second']:5.1f} sentences/s")
    write_json(args.out, {"benchmark": "espeak-ng synthesis (voicelib.data.espeak.synthesize, default voice)",
                          "machine": machine(), "results": results,
                          "note": "single process; one espeak-ng library instance per process (voicelib.data.espeak), "
                                  "1 core"})


if __name__ == "__main__":
    main()
