"""Benchmark every installed AI engine (x real time on 1 and 2 cores) and the minutes per family of a default
offline Hindi collection on ../shared/speech; writes bench/results/engines.json with the machine named.

    .venv/bin/python bench/bench_engines.py --sentences 6 --limit 60
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import pandas as pd  # noqa: E402
from machine import machine  # noqa: E402  (bench/machine.py, beside this script)

from voicelib.audio import decode
from voicelib.data.collect import CollectConfig, collect_all  # noqa: E402
from voicelib.data.sources import engines, folder, synth, vocode  # noqa: E402
from voicelib.data.sources.clips import prompts  # noqa: E402
from voicelib.files import read_json, write_json  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "speech"
log = logging.getLogger("bench_engines")


def _jobs(name: str, out: Path, *, language: str, texts: list[str], humans: list[dict]) -> list:
    """Jobs of one engine: its TTS plan, or vocoded copies of the human clips."""
    engine = engines.get(name)
    if engine.vocoder:
        table = {name: (engine.module, dict(engine.args))}
        return vocode.plan(humans, out, engines=table, per_clip=1, seed=0)
    return engine.load().plan(out, language=language, texts=texts, seed=0)


def _audio_seconds(jobs: list) -> float:
    return sum(decode.info(j.path).duration for j in jobs if Path(j.path).is_file())


def bench_engine(name: str, *, language: str, texts: list[str], humans: list[dict], tmp: Path) -> dict:
    """Time one engine in-process (1 core) and in 2 loky workers (after each worker loaded the engine once)."""
    one = _jobs(name, tmp / name / "one", language=language, texts=texts, humans=humans)
    synth.render(one[:1], workers=1)  # warm-up: load the model in this process
    start = time.perf_counter()
    synth.render(one[1:], workers=1)
    single = time.perf_counter() - start
    two = _jobs(name, tmp / name / "two", language=language, texts=texts, humans=humans)
    synth.render(two[:2], workers=2)  # warm-up: each worker loads the engine
    start = time.perf_counter()
    failures = synth.render(two[2:], workers=2)
    double = time.perf_counter() - start
    seconds_one, seconds_two = _audio_seconds(one[1:]), _audio_seconds(two[2:])
    return {"language": language, "clips": len(one) - 1, "audio_seconds": round(seconds_one, 2),
            "x_real_time_1_core": round(seconds_one / single, 1) if single else None,
            "x_real_time_2_workers": round(seconds_two / double, 1) if double else None, "failures": len(failures)}


def bench_speeds(*, sentences: int, tmp: Path) -> dict:
    """Speed of every available engine that needs no network (Hindi where it speaks it, else English)."""
    humans = [r for r in folder.collect(None, language="hindi", limit=sentences + 2, seed=0, root=SHARED)
              if r["label"] == "human"][: sentences + 2] if SHARED.is_dir() else []
    results = {}
    for name, engine in engines.ENGINES.items():
        if engine.network or name == "espeak":  # espeak-ng has its own bench (bench_espeak.py)
            continue
        language = "hindi" if "hindi" in engine.languages else engine.languages[0]
        ok, why = engine.available(language)
        if not ok or (engine.vocoder and not humans):
            results[name] = {"available": False, "reason": why or "no human clips to copy"}
            continue
        texts = prompts(language)[: sentences + 2]
        results[name] = {"family": engine.family, **bench_engine(name, language=language, texts=texts, humans=humans,
                                                                 tmp=tmp)}
        print(f"{name:14s} {results[name]['x_real_time_1_core']:>7} x RT 1 core, "
              f"{results[name]['x_real_time_2_workers']:>7} x RT 2 workers", flush=True)
    return results


def bench_collection(*, limit: int | None, tmp: Path) -> dict:
    """A default offline Hindi collect_all on ../shared/speech: wall time and minutes per family and engine."""
    start = time.perf_counter()
    df = collect_all(tmp / "hindi", CollectConfig(human_sources=[], local_dirs=[SHARED], limit=limit, seed=0,
                                                  workers=2), language="hindi")
    wall = time.perf_counter() - start
    table = df.groupby(["label", "family", "engine"])["duration"].agg(["size", "sum"]).reset_index()
    per_family = df.groupby("family")["duration"].sum() / 60
    return {"limit": limit, "wall_seconds_first_run": round(wall, 1), "workers": 2,
            "minutes_per_family": {k: round(v, 2) for k, v in per_family.items()},
            "per_engine": [{"label": r.label, "family": r.family, "engine": r.engine, "clips": int(r.size),
                            "minutes": round(r.sum / 60, 2)} for r in table.itertuples()],
            "engines": sorted(set(df.loc[df.label == "ai", "engine"])),
            "families": sorted(set(df.loc[df.label == "ai", "family"]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", type=int, default=6, help="clips timed per engine")
    parser.add_argument("--limit", type=int, default=60, help="collect_all limit for the Hindi run (0: no limit)")
    parser.add_argument("--collection-only", action="store_true",
                        help="only the Hindi collection, added to the existing results as hindi_collection_<limit>")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "engines.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-engines-") as tmp:
        speeds = None if args.collection_only else bench_speeds(sentences=args.sentences, tmp=Path(tmp))
        collection = bench_collection(limit=args.limit or None, tmp=Path(tmp)) if SHARED.is_dir() else None
    if collection:
        print(pd.DataFrame(collection["per_engine"]).to_string(index=False))
        print(f"first run {collection['wall_seconds_first_run']} s on 2 workers (limit {args.limit})")
    if args.collection_only:
        results = read_json(args.out)
        results[f"hindi_collection_{args.limit or 'no_limit'}"] = {"machine": machine(), **(collection or {})}
    else:
        results = {"benchmark": "AI engine synthesis speed (x real time = audio seconds / wall seconds, model "
                                "loaded first) and a default offline Hindi collect_all on ../shared/speech",
                   "machine": machine(), "speeds": speeds, "hindi_collection": collection,
                   "settings": {"sentences": args.sentences, "limit": args.limit}}
    write_json(args.out, results)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
