"""Local speech folders `<root>/<language>/{human,ai}/*`: the user's own recordings or ../shared/speech, read in place.

Files are never copied, converted or modified: rows point at them by absolute path. When
`<root>/manifest.csv` exists, its speaker, group, text, engine and source columns are used (matched
by path relative to root); otherwise the speaker is guessed from the file name and the group is the file.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from voicelib.audio import decode
from voicelib.errors import AudioError
from voicelib.files import file_hash
from voicelib.languages import language_name

log = logging.getLogger(__name__)

LABELS = ("human", "ai")


def _root_manifest(root: Path) -> dict[str, dict]:
    """Read <root>/manifest.csv into {relative path: row}; empty when absent."""
    path = root / "manifest.csv"
    if not path.is_file():
        return {}
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    if "path" not in table.columns:
        raise ValueError(f"{path}: no 'path' column; add one with file paths relative to {root}")
    return {Path(p).as_posix(): row for p, row in zip(table["path"], table.to_dict("records"))}


def _guess_speaker(path: Path) -> str:
    """Guess a speaker from a file name such as `alice_001.wav` or `src-spk-0001.flac` (prefix before the number)."""
    stem = re.sub(r"[-_ ]*\d+$", "", path.stem)
    return stem or path.stem


def _describe(path: Path) -> tuple[float, int, str]:
    """Return (duration, sample rate, hash), or (nan, 0, hash) when the header is unreadable (validation decides)."""
    digest = file_hash(path)
    try:
        meta = decode.info(path)
    except AudioError:
        return float("nan"), 0, digest
    return round(meta.duration, 3), meta.sample_rate, digest


def _row(path: Path, root: Path, label: str, language: str, known: dict[str, dict]) -> dict:
    """Build the manifest row of one local file, preferring what the root manifest says about it."""
    rel = path.relative_to(root).as_posix()
    info = known.get(rel, {})
    name = root.name or "folder"
    speaker = info.get("speaker") or f"{name}_{_guess_speaker(path)}"
    duration, sample_rate, digest = _describe(path)
    return {
        "path": str(path.resolve()), "language": language, "label": label,
        "source": info.get("source") or f"folder:{name}",
        "engine": info.get("engine") or ("human" if label == "human" else "unknown"),
        "voice": info.get("voice", ""), "speaker": speaker, "group": info.get("group") or f"{name}:{rel}",
        "text": " ".join(str(info.get("text", "")).split()),
        "duration": duration, "sample_rate": sample_rate, "hash": digest,
    }


def collect(out_dir: str | Path | None = None, *, language: str, limit: int | None = None, seed: int = 0,
            texts: list[str] | None = None, root: str | Path) -> list[dict]:
    """List `root/<language>/{human,ai}/*` audio files as manifest rows (a seeded sample of `limit` per label).

    `out_dir` and `texts` are unused: local files are read where they are.
    """
    del out_dir, texts
    root = Path(root).expanduser().resolve()
    language = language_name(language)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder; pass a folder laid out as <root>/{language}/human/*.wav")
    known = _root_manifest(root)
    rows = []
    for label in LABELS:
        folder = root / language / label
        files = sorted(p for p in folder.glob("*") if p.is_file() and p.suffix.lower() in decode.SUPPORTED_EXTENSIONS) \
            if folder.is_dir() else []
        if limit is not None and len(files) > limit:  # a seeded sample mixes the folder's sources and speakers
            files = sorted(files[i] for i in np.random.default_rng(seed).permutation(len(files))[:limit])
        for path in tqdm(files, desc=f"{root.name}/{language}/{label}", leave=False):
            rows.append(_row(path, root, label, language, known))
    log.info("folder %s: %d %s clips (%d human, %d ai)", root, len(rows), language,
             sum(r["label"] == "human" for r in rows), sum(r["label"] == "ai" for r in rows))
    return rows
