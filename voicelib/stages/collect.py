"""Stage 01, collect: human and AI speech of the run's language(s) into the data root, split, written to the run."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

from voicelib.data import manifest, splits
from voicelib.data.collect import QUARANTINE_FILE, CollectConfig, collect_all, last_run_notes
from voicelib.errors import DataError
from voicelib.files import RunDir, read_json, write_json
from voicelib.languages import LANGUAGE_NAMES, language_name

log = logging.getLogger(__name__)

SKIPPED_FILE = "collect_state/left_out.json"  # in the data directory: why a multilingual run left a language out


def data_dir(data_root: str | os.PathLike, language: str) -> Path:
    """Where a language's collected clips and its manifest persist across runs."""
    return Path(data_root) / language_name(language)


def run_languages(language: str, languages: list[str]) -> list[str]:
    """The languages of a run: `languages` when given ("all" for every one), else `language` alone."""
    if "all" in languages:
        return list(LANGUAGE_NAMES)
    return [language_name(name) for name in (languages or [language])]


def collect(data_root: str | os.PathLike, config: CollectConfig, *, language: str,
            languages: list[str] = ()) -> pd.DataFrame:
    """Collect (or reuse) each language's clips into the data root; the kept, validated rows of all of them.

    A language with AI clips but no human ones is refused (one line: a model would learn "this language => AI");
    with `languages=["all"]` it is left out, and the collection notes say so.
    """
    frames = []
    for name in run_languages(language, list(languages)):
        try:
            frames.append(collect_all(data_dir(data_root, name), config, language=name))
            (data_dir(data_root, name) / SKIPPED_FILE).unlink(missing_ok=True)
        except DataError as exc:
            if "all" not in languages or "no usable human speech" not in str(exc):
                raise
            log.warning("%s left out of this multilingual run: %s", name, exc)
            write_json(data_dir(data_root, name) / SKIPPED_FILE, {"note": f"{name} left out: no human speech"})
    if not frames:
        raise DataError("no language of this run has human speech; give recordings with --data-dir")
    return pd.concat(frames, ignore_index=True)


def notes(data_root: str | os.PathLike, language: str, languages: list[str] = ()) -> list[str]:
    """What the collection had to say: unreachable sources, fallbacks, languages left out."""
    out = []
    for name in run_languages(language, list(languages)):
        skipped = data_dir(data_root, name) / SKIPPED_FILE
        out += ([read_json(skipped)["note"]] if skipped.is_file() and "all" in languages else
                last_run_notes(data_dir(data_root, name)))
    return list(dict.fromkeys(out))


def quarantined(data_root: str | os.PathLike, language: str, languages: list[str] = ()) -> pd.DataFrame:
    """The clips validation refused, with the reason for each."""
    paths = [data_dir(data_root, name) / QUARANTINE_FILE for name in run_languages(language, list(languages))]
    frames = [manifest.read_manifest(path) for path in paths if path.is_file()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["path", "reason"])


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
