"""Stage 01, collect: human and AI speech of one language into the data root, split, written to the run."""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from voicelib.data import manifest, splits
from voicelib.data.collect import QUARANTINE_FILE, CollectConfig, collect_all, last_run_notes
from voicelib.files import RunDir, write_json
from voicelib.languages import language_name


def data_dir(data_root: str | os.PathLike, language: str) -> Path:
    """Where a language's collected clips and its manifest persist across runs."""
    return Path(data_root) / language_name(language)


def collect(data_root: str | os.PathLike, config: CollectConfig, *, language: str) -> pd.DataFrame:
    """Collect (or reuse) the language's clips into the data root; the kept, validated rows."""
    return collect_all(data_dir(data_root, language), config, language=language)


def notes(data_root: str | os.PathLike, language: str) -> list[str]:
    """What the collection had to say: unreachable sources, fallbacks."""
    return last_run_notes(data_dir(data_root, language))


def quarantined(data_root: str | os.PathLike, language: str) -> pd.DataFrame:
    """The clips validation refused, with the reason for each."""
    return manifest.read_manifest(data_dir(data_root, language) / QUARANTINE_FILE)


def split(df: pd.DataFrame, *, seed: int, val_fraction: float, test_fraction: float,
          test_families: list[str], val_families: list[str]) -> pd.DataFrame:
    """Speaker-, group- and sentence-disjoint splits, then whole AI families held out; leakage refused."""
    parts = splits.assign_splits(df, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)
    parts = splits.hold_out_families(parts, seed=seed, test_families=test_families, val_families=val_families)
    splits.check_leakage(parts)
    return parts


def write(run: RunDir, split_frame: pd.DataFrame, quarantine: pd.DataFrame, collect_notes: list[str]) -> dict:
    """Write the run's manifest, quarantine and data summary; return the summary."""
    manifest.write_manifest(split_frame, run.manifest)
    manifest.write_manifest(quarantine, run.quarantine)
    summary = manifest.describe(split_frame, quarantined=len(quarantine), notes=collect_notes)
    write_json(run.data_summary, summary)
    return summary
