"""Data sources and the one call that collects a language: human speech first, then AI speech of the same sentences."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import pandas as pd

from voicelib import manifest
from voicelib.errors import DataError, SourceUnavailable
from voicelib.io import write_json
from voicelib.languages import language_name
from voicelib.sources import edge, espeak, fleurs, folder, gtts
from voicelib.sources.online import PartialCollection, say_once

log = logging.getLogger(__name__)

SOURCES = {"fleurs": fleurs, "folder": folder, "espeak": espeak, "gtts": gtts, "edge": edge}
HUMAN_SOURCES = ("fleurs",)
TTS_ENGINES = ("espeak", "gtts", "edge")
OFFLINE_ENGINE = "espeak"


def _human_rows(data_dir: Path, *, language: str, human_sources, local_dirs, limit, seed, options,
                notes: list[str]) -> list[dict]:
    """Collect human speech from online sources (skipped when unreachable, said once and noted) and local folders."""
    rows: list[dict] = []
    for name in human_sources:
        if name not in HUMAN_SOURCES:
            raise ValueError(f"unknown human source {name!r}; choose from {', '.join(HUMAN_SOURCES)} or use local_dirs")
        try:
            rows += SOURCES[name].collect(data_dir / "audio" / name, language=language, limit=limit, seed=seed,
                                          **options.get(name, {}))
        except SourceUnavailable as exc:
            say_once(f"unreachable:{name}", f"{name} unreachable ({exc}); continuing with the other sources", logger=log)
            notes.append(f"{name} unreachable (no human speech from it in this run): {str(exc)[:160]}")
    for root in local_dirs:
        rows += folder.collect(None, language=language, limit=limit, seed=seed, root=root)
    return rows


def _sentences(rows: list[dict], limit: int | None) -> tuple[list[str] | None, dict[str, str]]:
    """Return the sentences human clips speak (first `limit`) and which human speaker said each; None if none."""
    keys: dict[str, str] = {}
    for row in rows:
        text = " ".join(str(row.get("text", "")).split())
        if row["label"] == "human" and text and text not in keys:
            keys[text] = row.get("speaker") or row["path"]
    texts = list(keys)[:limit] if limit is not None else list(keys)
    return (texts or None), keys


def _ai_rows(data_dir: Path, *, language: str, tts_engines, texts, voice_keys, limit, seed, options) -> tuple[list[dict], list[str]]:
    """Speak `texts` with each engine; an unreachable online engine hands its remaining texts to espeak-ng."""
    rows, notes = [], []
    for name in tts_engines:
        if name not in TTS_ENGINES:
            raise ValueError(f"unknown TTS engine {name!r}; choose from {', '.join(TTS_ENGINES)}")
        opts = dict(options.get(name, {}))
        if name in ("espeak", "edge"):
            opts.setdefault("voice_keys", voice_keys)
        common = dict(language=language, limit=limit, seed=seed, texts=texts)
        try:
            rows += SOURCES[name].collect(data_dir / "audio" / name, **common, **opts)
        except PartialCollection as exc:
            rows += exc.rows
            if OFFLINE_ENGINE in tts_engines:  # espeak-ng speaks every text anyway
                say_once(f"unreachable:{name}", f"{name} unreachable ({exc}); espeak-ng is also in this run", logger=log)
                notes.append(f"{name} unreachable: {len(exc.remaining)} texts not spoken by it (espeak-ng is in the run)")
                continue
            say_once(f"unreachable:{name}", f"{name} unreachable ({exc}); falling back to espeak-ng offline", logger=log)
            notes.append(f"{name} unreachable: {len(exc.remaining)} texts spoken by espeak-ng instead")
            rows += espeak.collect(data_dir / "audio" / OFFLINE_ENGINE, **{**common, "texts": exc.remaining},
                                   voice_keys=voice_keys, **options.get(OFFLINE_ENGINE, {}))
    return rows, notes


def _merge(data_dir: Path, new: pd.DataFrame) -> pd.DataFrame:
    """Existing manifest and quarantine rows (kept in place) updated by the new rows, then the brand-new ones."""
    old = [manifest.read_manifest(p) for p in (data_dir / "manifest.csv", data_dir / "quarantine.csv") if p.is_file()]
    old_df = pd.concat(old, ignore_index=True) if old else pd.DataFrame(columns=manifest.COLUMNS)
    old_df = old_df[manifest.COLUMNS].drop_duplicates("path")
    fresh = new.drop_duplicates("path").set_index("path", drop=False)
    kept = [fresh.loc[p].to_dict() if p in fresh.index else row for p, row in zip(old_df["path"], old_df.to_dict("records"))]
    added = fresh[~fresh.index.isin(old_df["path"])].to_dict("records")
    return manifest.to_frame(kept + added or pd.DataFrame(columns=manifest.COLUMNS))


def collect_all(data_dir: str | Path, *, language: str, human_sources: list[str] | tuple = HUMAN_SOURCES,
                tts_engines: list[str] | tuple = ("gtts",), local_dirs: list[str | Path] | tuple = (),
                limit: int | None = None, seed: int = 0, options: dict[str, dict] | None = None,
                min_duration: float = 0.5, max_duration: float = 60.0) -> pd.DataFrame:
    """Collect, merge, validate and write data_dir/manifest.csv (+ quarantine.csv); return the kept rows.

    `limit` caps clips per source; the AI side speaks the human clips' sentences when known.
    `options` holds keyword options per source name, e.g. {"gtts": {"timeout": 5}}.
    """
    started, data_dir, language = time.time(), Path(data_dir), language_name(language)
    options, notes = options or {}, []
    humans = _human_rows(data_dir, language=language, human_sources=human_sources, local_dirs=local_dirs,
                         limit=limit, seed=seed, options=options, notes=notes)
    texts, voice_keys = _sentences(humans, limit)
    log.info("%d human clips; AI speaks %s", len(humans),
             f"their {len(texts)} sentences" if texts else "the shipped prompts (no human transcripts)")
    ai, ai_notes = _ai_rows(data_dir, language=language, tts_engines=tts_engines, texts=texts, voice_keys=voice_keys,
                            limit=limit, seed=seed, options=options)
    notes += ai_notes
    merged = _merge(data_dir, manifest.to_frame(humans + ai or pd.DataFrame(columns=manifest.COLUMNS)))
    kept, quarantined = manifest.validate(merged, min_duration=min_duration, max_duration=max_duration)
    manifest.write_manifest(kept, data_dir / "manifest.csv")
    manifest.write_manifest(quarantined, data_dir / "quarantine.csv")
    _report(data_dir, kept, quarantined, notes=notes, seconds=time.time() - started)
    if not (kept["label"] == "human").any():
        raise DataError(f"no usable human speech for {language}: put recordings in <dir>/{language}/human/*.wav "
                        f"and pass local_dirs=[<dir>] (--data-dir <dir>), or run online so FLEURS can be downloaded")
    return kept


def _report(data_dir: Path, kept: pd.DataFrame, quarantined: pd.DataFrame, *, notes: list[str], seconds: float) -> None:
    """Log the validation summary and keep it in data_dir/collect_state/last_run.json."""
    by_label = manifest.summary(kept, by=["label"]).set_index("label")
    for label, row in by_label.iterrows():
        log.info("kept %d %s clips (%.1f min)", row["clips"], label, row["minutes"])
    reasons = {str(k): int(v) for k, v in manifest.reason_counts(quarantined).items()}
    log.info("quarantined %d clips%s (see %s)", len(quarantined), f": {reasons}" if reasons else "",
             data_dir / "quarantine.csv")
    write_json(data_dir / "collect_state" / "last_run.json", {
        "kept": int(len(kept)), "quarantined": int(len(quarantined)), "quarantine_reasons": reasons,
        "by_label": {k: {"clips": int(v["clips"]), "minutes": float(v["minutes"])} for k, v in by_label.iterrows()},
        "notes": notes, "seconds": round(seconds, 1)})


def last_run_notes(data_dir: str | Path) -> list[str]:
    """What the last collection into `data_dir` had to say (unreachable sources, fallbacks)."""
    path = Path(data_dir) / "collect_state" / "last_run.json"
    from voicelib.io import read_json

    return list(read_json(path).get("notes", [])) if path.is_file() else []
