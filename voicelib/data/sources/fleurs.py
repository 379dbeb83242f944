"""Human read speech from FLEURS (google/fleurs on the Hugging Face hub, CC-BY-4.0), downloaded file by file.

The hub's loading script no longer runs with datasets >= 4, so this reads the raw files the script used:
`data/<config>/<split>.tsv` and `data/<config>/audio/<split>.tar.gz`.

What FLEURS gives and what it does not: each TSV line is
`id, file_name, raw_transcription, transcription, words, num_samples, gender`. `id` is the FLoRes
sentence id, shared by every reading of that sentence, so it is our `group`. There is NO speaker id.
FLEURS' own train/dev/test splits are speaker-disjoint, so the honest proxy is one pseudo-speaker per
(FLEURS split, gender): coarse, but it can never put one person on both sides of our splits.
"""
from __future__ import annotations

import csv
import logging
import math
import os
import re
import tarfile
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from voicelib.audio import decode
from voicelib.config import SAMPLE_RATE
from voicelib.data.sources.clips import make_row, store_wave
from voicelib.data.sources.online import with_retries
from voicelib.errors import AudioError, SourceUnavailable
from voicelib.files import read_json, write_json
from voicelib.languages import FLEURS_CONFIG, language_name

log = logging.getLogger(__name__)

REPO = "google/fleurs"
TSV_FIELDS = ("id", "file_name", "raw_transcription", "transcription", "words", "num_samples", "gender")
SPLITS = ("dev", "test")  # the two small archives; add "train" for more (several GB for some languages)
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def read_tsv(path: str | Path) -> list[dict]:
    """Parse a FLEURS TSV (no header, 7 tab-separated fields); malformed lines are skipped with a warning."""
    rows, bad = [], 0
    with open(path, encoding="utf-8", newline="") as handle:
        for fields in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
            if len(fields) != len(TSV_FIELDS) or not _SAFE_NAME.match(fields[1]):
                bad += 1
                continue
            rows.append(dict(zip(TSV_FIELDS, fields)))
    if bad:
        log.warning("%s: skipped %d malformed lines", path, bad)
    return rows


def unsafe_reason(member: tarfile.TarInfo) -> str | None:
    """Return why an archive member must not be read (absolute path, '..', link, device), or None."""
    name = member.name.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    if ".." in name.split("/"):
        return "path traversal ('..')"
    if member.issym() or member.islnk():
        return "link"
    if not member.isfile():
        return "not a regular file"
    return None


def download(filename: str, *, endpoint: str | None = None, revision: str = "main", cache_dir: str | Path | None = None,
             retries: int = 2, backoff: float = 1.0, timeout: float = 30.0, seed: int = 0) -> Path:
    """Download one file of google/fleurs (resuming a partial download) and return its local path."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None  # the hub reads it only at import time

    def call() -> Path:
        try:
            return Path(hf_hub_download(REPO, filename, repo_type="dataset", revision=revision, endpoint=endpoint,
                                        cache_dir=cache_dir, etag_timeout=timeout))
        except EntryNotFoundError as exc:  # not transient: say so at once
            raise SourceUnavailable(f"FLEURS: {filename} not found on {endpoint or 'the hub'} ({exc})") from exc
        except RuntimeError as exc:  # huggingface_hub 1.16 closes its client after a connect error, then reuses it
            if "client has been closed" not in str(exc):
                raise
            raise ConnectionError(f"cannot connect to {endpoint or 'huggingface.co'}") from exc

    return with_retries(call, what=f"FLEURS download of {filename} from {endpoint or 'huggingface.co'}",
                        retries=retries, backoff=backoff, seed=seed,
                        retry_on=(OSError, HfHubHTTPError, LocalEntryNotFoundError, _httpx_error()))


def _httpx_error() -> type[BaseException]:
    """Return httpx's base error class (huggingface_hub's transport) or OSError when absent."""
    try:
        import httpx

        return httpx.HTTPError
    except ImportError:  # pragma: no cover - huggingface_hub >= 1 depends on httpx
        return OSError


def _extract(archive: Path, wanted: dict[str, Path]) -> int:
    """Stream through a .tar.gz and store each wanted member (by base name) as 16 kHz FLAC; return count."""
    found, rejected = 0, 0
    with tarfile.open(archive, mode="r|gz") as tar:
        for member in tar:
            reason = unsafe_reason(member)
            base = member.name.replace("\\", "/").rsplit("/", 1)[-1]
            if reason:
                rejected += 1
                log.warning("%s: skipped member %r (%s)", archive.name, member.name, reason)
                continue
            if base not in wanted or wanted[base].is_file():
                continue
            data = tar.extractfile(member).read()  # bytes only: member names never become paths
            try:
                wave = decode.decode_bytes(data, sr=SAMPLE_RATE, name=f"{archive.name}:{base}")
                store_wave(wanted[base], wave, SAMPLE_RATE)
                found += 1
            except AudioError as exc:
                log.warning("FLEURS: %s", exc)
            if all(p.is_file() for p in wanted.values()):
                break
    if rejected:
        log.warning("%s: %d unsafe members ignored", archive.name, rejected)
    return found


def _collect_split(out_dir: Path, config: str, split: str, *, want: int | None, seed: int, language: str,
                   **download_options) -> list[dict]:
    """Collect up to `want` clips of one FLEURS split (seeded choice), downloading the archive only if needed."""
    entries = read_tsv(download(f"data/{config}/{split}.tsv", seed=seed, **download_options))
    target = out_dir / config / split
    state = target / "unavailable.json"  # names the archive lacks or that were unsafe: never fetched again
    unavailable = set(read_json(state)) if state.is_file() else set()
    order = np.random.default_rng(seed).permutation(len(entries))
    chosen = [entries[i] for i in order if entries[i]["file_name"] not in unavailable]
    chosen = chosen[: want if want is not None else len(chosen)]
    paths = {e["file_name"]: target / f"{Path(e['file_name']).stem}.flac" for e in chosen}
    missing = {name: p for name, p in paths.items() if not p.is_file()}
    if missing:
        archive = download(f"data/{config}/audio/{split}.tar.gz", seed=seed, **download_options)
        log.info("FLEURS %s/%s: extracted %d of %d missing clips", config, split,
                 _extract(archive, missing), len(missing))
        lost = {name for name, p in missing.items() if not p.is_file()}
        if lost:
            write_json(state, sorted(unavailable | lost))
    rows = []
    for entry in tqdm(chosen, desc=f"FLEURS {config}/{split}", leave=False):
        path = paths[entry["file_name"]]
        if not path.is_file():
            continue
        speaker = f"fleurs_{config}_{split}_{entry['gender'].strip().lower() or 'unknown'}"
        rows.append(make_row(path, language=language, label="human", source="fleurs", engine="human",
                             speaker=speaker, group=f"fleurs_{config}_{entry['id']}",
                             text=" ".join(entry["raw_transcription"].split())))
    return rows


def collect(out_dir: str | Path, *, language: str, limit: int | None = None, seed: int = 0,
            texts: list[str] | None = None, splits: tuple[str, ...] = SPLITS, endpoint: str | None = None,
            revision: str = "main", cache_dir: str | Path | None = None, retries: int = 2, backoff: float = 1.0,
            timeout: float = 30.0) -> list[dict]:
    """Download up to `limit` FLEURS clips (spread over `splits`) into out_dir; existing clips are not fetched again.

    `texts` is ignored (FLEURS brings its own transcripts). The endpoint defaults to $HF_ENDPOINT.
    """
    del texts
    config = FLEURS_CONFIG[language_name(language)]
    if limit is not None and limit < 0:
        raise ValueError(f"limit {limit} is negative; use None for everything or a positive number of clips")
    want = None if limit is None else math.ceil(limit / len(splits))
    options = dict(endpoint=endpoint, revision=revision, cache_dir=cache_dir, retries=retries, backoff=backoff,
                   timeout=timeout)
    rows: list[dict] = []
    for split in splits:
        rows += _collect_split(Path(out_dir), config, split, want=want, seed=seed, language=language, **options)
    rows = rows[:limit] if limit is not None else rows
    log.info("FLEURS %s: %d clips from %s", language, len(rows), ", ".join(splits))
    return rows
