"""Vocoded copies (copy-synthesis) of human clips: same speaker, group, text and language; only the synthesis differs.

A copy keeps its source's speaker and group, so the speaker/group/sentence-disjoint splits put it in
its source's split, and `source_path` names the clip it was made from (Wang and Yamagishi, ICASSP 2023).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from voicelib.audio import decode
from voicelib.config import SAMPLE_RATE
from voicelib.data.sources.clips import clip_path, pick
from voicelib.data.sources.synth import Job

log = logging.getLogger(__name__)

FAMILY = "vocoder"
SOURCE = "vocoded"


def load_source(path: str | Path) -> np.ndarray:
    """Decode a human clip at 16 kHz mono as float64 (what the vocoders analyse)."""
    return decode.load(path, sr=SAMPLE_RATE, max_duration=600.0).astype(np.float64)


def choose(path: str, engines: list[str], per_clip: int, *, seed: int) -> list[str]:
    """The `per_clip` vocoders that copy this clip, chosen deterministically from its path and `seed`."""
    rest, chosen = list(engines), []
    for k in range(min(per_clip, len(rest))):
        name = pick(rest, "vocoder", Path(path).name, k, seed=seed)
        chosen.append(name)
        rest.remove(name)
    return sorted(chosen, key=engines.index)


def plan(rows: list[dict], out_dir: str | Path, *, engines: dict[str, tuple[str, dict]], per_clip: int = 1,
         seed: int = 0) -> list[Job]:
    """Jobs copying each human row through `per_clip` of `engines` ({engine name: (module, synthesize args)})."""
    if per_clip < 0:
        raise ValueError(f"vocoders_per_clip {per_clip} is negative; use 0 (none) or more")
    jobs = []
    for row in rows:
        if row.get("label") != "human":
            continue
        for name in choose(row["path"], list(engines), per_clip, seed=seed):
            module, args = engines[name]
            path = clip_path(Path(out_dir) / name, name, row.get("hash") or row["path"])
            jobs.append(Job(module, path, dict(source=row["path"], seed=seed, **args),
                            dict(language=row["language"], label="ai", source=SOURCE, engine=name, family=FAMILY,
                                 voice=name, speaker=row.get("speaker", ""), group=row.get("group", ""),
                                 text=row.get("text", ""), source_path=row["path"]),
                            float(row.get("duration") or 0.0)))
    return jobs
