"""Score what a user names on the command line: files, directories (recursively) and glob patterns."""
from __future__ import annotations

import glob
import logging
import os
from pathlib import Path
from typing import Iterable

from voicelib.audio.decode import SUPPORTED_EXTENSIONS

log = logging.getLogger(__name__)


def expand_paths(paths: Iterable[str | os.PathLike]) -> tuple[list[str], list[dict]]:
    """Expand files, directories (recursively, audio extensions only) and globs; return (files, error entries)."""
    out: list[str] = []
    problems: list[dict] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(str(f) for f in p.rglob("*") if f.is_file() and f.suffix.lower() in SUPPORTED_EXTENSIONS)
            out.extend(found)
            if not found:
                problems.append({"file": str(raw),
                                 "error": "directory holds no audio files with a supported extension"})
        elif not p.exists() and glob.has_magic(str(raw)):
            matches = [m for m in sorted(glob.glob(str(raw), recursive=True)) if Path(m).is_file()]
            out.extend(matches)
            if not matches:
                problems.append({"file": str(raw), "error": "pattern matches no file; check the pattern and quote it"})
        else:
            out.append(str(raw))
    return list(dict.fromkeys(out)), problems


def detect_paths(paths: Iterable[str | os.PathLike], detector, *, chunk_duration: float = 3.0,
                 overlap: float = 0.5, files_per_batch: int = 16) -> tuple[list[dict], int]:
    """Score every file the paths expand to, a few files per batch; return (results, number of failures)."""
    files, results = expand_paths(paths)
    for i in range(0, len(files), files_per_batch):
        results.extend(detector.score_files(files[i:i + files_per_batch], chunk_duration=chunk_duration,
                                            overlap=overlap))
    n_failed = sum("error" in r for r in results)
    log.info("scored %d files, %d failed", len(results) - n_failed, n_failed)
    return results, n_failed
