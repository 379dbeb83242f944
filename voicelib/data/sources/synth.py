"""Shared machinery of the offline engines: plan clips as jobs, render the missing ones in worker processes, make rows.

An engine module plans `Job`s (where the clip goes, what to synthesise, the manifest row it becomes);
`render` runs the jobs whose file is missing through `<module>.synthesize(**args)` in joblib (loky)
worker processes, or on a Dask cluster through joblib's Dask backend (`scheduler`), so each worker loads
an engine once (engine modules cache their models per process). Files are named by content,
so a rerun skips every clip already made (idempotent and resumable).
"""
from __future__ import annotations

import contextlib
import importlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm.auto import tqdm

from voicelib.audio import dsp
from voicelib.data import cluster
from voicelib.data.sources.clips import choose_texts, clip_path, make_row, pick, store_wave
from voicelib.languages import language_code, language_name

log = logging.getLogger(__name__)

TRIM_DB, TRIM_PAD = 40.0, 0.05  # silence trimmed from TTS output: below peak - 40 dB, keeping 50 ms
CHARS_PER_SECOND = 14.0  # rough speaking rate, for minute caps when the human duration is unknown


@dataclass
class Job:
    """One clip to make: the engine module, its synthesize() arguments, the target path and its manifest row."""

    module: str
    path: Path
    args: dict
    row: dict
    estimate: float = 0.0  # expected seconds (the source/human duration when known)
    trim: bool = False  # trim leading/trailing silence (TTS pads it; a vocoded copy keeps its source's timing)


def estimate_seconds(text: str, known: dict[str, float] | None = None) -> float:
    """Expected duration of `text`: the human clip's duration when known, else from its length."""
    if known and text in known:
        return float(known[text])
    return max(1.0, len(text) / CHARS_PER_SECOND)


def default_workers() -> int:
    """The number of usable cores (the default for `workers`)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _render_one(module: str, path: str, args: dict, trim: bool = False) -> tuple[str, str | None]:
    """Synthesise one clip in this process (the module caches its engine) and store it; return (path, error)."""
    try:
        wave, sr = importlib.import_module(module).synthesize(**args)
        if wave is None or len(wave) == 0:
            return path, "engine returned no audio"
        if trim:  # neural TTS pads ~0.3-0.6 s of silence that cut human clips lack: silence must be no cue
            wave = dsp.trim_silence(np.asarray(wave, dtype=np.float32), sr, top_db=TRIM_DB, pad=TRIM_PAD)
        store_wave(Path(path), wave, sr)
    except Exception as exc:  # noqa: BLE001 - one bad clip must not stop a collection; reported per clip
        return path, f"{type(exc).__name__}: {exc}"
    return path, None


def render(jobs: list[Job], *, workers: int | None = None, desc: str = "synthesis", scheduler: str = "",
           shared_root: str | os.PathLike | None = None) -> dict[str, str]:
    """Make every job's clip that does not exist yet; return failures (path -> error).

    Local: `workers` processes (0/None: all cores). With `scheduler` (tcp://HOST:PORT): the same calls run on
    that Dask cluster's workers (joblib's Dask backend), after checking they all see `shared_root` (default: the
    jobs' common folder). Workers only write clip files (atomically); a clip a dead worker did not finish is
    retried by Dask on another worker, or made by the next run.
    """
    todo = [j for j in jobs if not Path(j.path).is_file()]
    if workers is not None and int(workers) < 0:
        raise ValueError(f"workers {workers} is negative; use 1 or more, or 0/None for the number of cores")
    workers = int(workers) if workers else default_workers()
    failures: dict[str, str] = {}
    if not todo:
        return failures
    for module in sorted({j.module for j in todo}):  # one-off setup (e.g. unpacking a model) before workers race
        prepare = getattr(importlib.import_module(module), "prepare", None)
        if prepare is not None:
            prepare()
    calls = [(j.module, str(j.path), j.args, j.trim) for j in todo]
    root = shared_root or os.path.commonpath([str(Path(j.path).parent) for j in todo])
    started, step = time.perf_counter(), max(len(calls) // 10, 1)
    with _backend(scheduler, root) as backend:
        results = _results(calls, workers=workers, backend=backend)
        for done, (path, error) in enumerate(tqdm(results, total=len(calls), desc=desc, leave=False), 1):
            if error:
                failures[path] = error
            if done % step == 0 and done < len(calls):  # a log line: the terminal and the stage's HTML show it
                spent = time.perf_counter() - started
                log.info("%s: %d/%d clips, %.1f min, about %.1f min left", desc, done, len(calls), spent / 60,
                         spent / done * (len(calls) - done) / 60)
    for error in sorted(set(failures.values()))[:3]:
        log.warning("%s: %d clip(s) failed: %s", desc, sum(e == error for e in failures.values()), error)
    log.info("%s: %d new clips, %d already there, %d failed", desc, len(todo) - len(failures),
             len(jobs) - len(todo), len(failures))
    return failures


@contextlib.contextmanager
def _backend(scheduler: str, root: str | os.PathLike) -> Iterator[str]:
    """"dask" inside a checked connection to the cluster at `scheduler`; "loky" (local processes) without one."""
    if not scheduler:
        yield "loky"
        return

    with cluster.shared_backend(scheduler, root):
        yield "dask"


def _results(calls: list[tuple], *, workers: int, backend: str) -> Iterator[tuple[str, str | None]]:
    """(path, error) of each call, in the order they finish: in this process, local processes or the cluster."""
    if backend == "loky" and (workers == 1 or len(calls) == 1):
        return (_render_one(*c) for c in calls)
    from joblib import Parallel, delayed

    if backend == "loky":
        options = dict(n_jobs=min(workers, len(calls)), backend="loky")
    else:  # the Dask backend parallel_config set: every thread of the cluster
        options = dict(n_jobs=-1)
    return Parallel(**options, return_as="generator_unordered")(
        delayed(_render_one)(*c) for c in calls)


def rows_of(jobs: list[Job]) -> list[dict]:
    """Manifest rows of the jobs whose clip exists."""
    rows = []
    for job in jobs:
        if Path(job.path).is_file():
            rows.append(make_row(job.path, **job.row))
    return rows


def collect_jobs(jobs: list[Job], *, workers: int | None = 1, desc: str, scheduler: str = "") -> list[dict]:
    """Render the jobs (locally, or on the Dask cluster at `scheduler`) and return the rows of the clips that exist."""
    render(jobs, workers=workers, desc=desc, scheduler=scheduler)
    return rows_of(jobs)


def cap_minutes(jobs: list[Job], max_minutes: float | None) -> list[Job]:
    """Keep jobs in order until their expected duration reaches `max_minutes` (None: all)."""
    if max_minutes is None:
        return list(jobs)
    kept, total = [], 0.0
    for job in jobs:
        if total >= max_minutes * 60:
            break
        kept.append(job)
        total += job.estimate
    return kept


def plan_tts(module: str, out_dir: str | Path, *, engine: str, family: str, language: str, voices: list,
             limit: int | None, seed: int, texts: list[str] | None, voice_keys: dict[str, str] | None = None,
             durations: dict[str, float] | None = None, speeds: tuple[float, ...] = (1.0,)) -> list[Job]:
    """Jobs speaking `texts` (or the shipped prompts), one voice per human speaker as espeak-ng does."""
    code, name = language_code(language), language_name(language)
    keys = voice_keys or {}
    jobs = []
    for text in choose_texts(texts, language=language, limit=limit, seed=seed):
        voice = pick(list(voices), engine, "voice", keys.get(text, text), seed=seed)
        speed = pick(list(speeds), engine, "speed", text, seed=seed)
        label = f"{voice}/x{speed:g}"
        speaker = f"{engine}_{code}_{voice}"
        jobs.append(Job(module, clip_path(out_dir, engine, code, label, text),
                        dict(text=text, language=code, voice=voice, speed=speed, seed=seed),
                        dict(language=name, label="ai", source=engine, engine=engine, family=family,
                             voice=f"{code}:{label}", speaker=speaker, group=speaker, text=text),
                        estimate_seconds(text, durations) / speed, trim=True))
    return jobs


def pick_key(*keys: object) -> bytes:
    """A stable sort key from `keys` (a seeded order that does not depend on the run or machine)."""
    import hashlib

    return hashlib.sha256("\x1f".join(map(str, keys)).encode("utf-8")).digest()
