"""The manifest: its columns, reading and writing, validation with quarantine, and leak-free splits."""
from __future__ import annotations

import logging
import os
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from voicelib.audio import decode, dsp
from voicelib.config import SAMPLE_RATE
from voicelib.errors import AudioError, DataError
from voicelib.files import atomic_write, backup_if_exists, file_hash

log = logging.getLogger(__name__)


COLUMNS = ["path", "language", "label", "source", "engine", "family", "voice", "speaker", "group", "text",
           "duration", "sample_rate", "hash", "source_path"]


# published outputs of modern neural TTS systems (the development corpus has them): a family of their own, held out
# like any synthesised family, as the closest the development data comes to what users meet
PUBLISHED_NEURAL = ("supertonic-3", "parler-tts-mini-v1", "kitten-tts", "kokoro", "cosyvoice2", "chatterbox",
                    "xtts-v2", "smallest-lightning", "f5-tts", "bark", "speecht5-ft")
# family of engines whose rows may lack one (old manifests, folder corpora); new sources write their own
ENGINE_FAMILIES = {"human": "human", "espeak-ng": "formant", "gtts": "online-neural", "fastspeech2-hs": "neural",
                   "tortoise": "neural", "edge-neural": "neural",
                   **{engine: "published-neural" for engine in PUBLISHED_NEURAL}}


SPLIT_COLUMNS = ["split", "split_reason"]


LABELS = ("human", "ai")


_TEXT_COLUMNS = [c for c in COLUMNS if c not in ("duration", "sample_rate")]


def normalize_text(text: object) -> str:
    """Fold a sentence for comparison: case, punctuation and spacing do not make two sentences different."""
    text = unicodedata.normalize("NFC", str(text or "")).casefold()
    kept = "".join(" " if unicodedata.category(ch).startswith(("P", "S")) else ch for ch in text)
    return " ".join(kept.split())


def infer_family(engine: str, label: str) -> str:
    """Family of a row that names none: `human` for human clips, else from the engine name, else `unknown`."""
    if label == "human":
        return "human"
    return ENGINE_FAMILIES.get(engine, "unknown")


def to_frame(rows: list[dict] | pd.DataFrame) -> pd.DataFrame:
    """Return rows as a DataFrame with every manifest column (missing ones empty) and clean dtypes."""
    df = pd.DataFrame(rows).copy()
    if "path" not in df.columns:
        raise DataError("manifest has no 'path' column; every row needs the path of its audio file")
    for col in _TEXT_COLUMNS + [c for c in SPLIT_COLUMNS if c in df.columns]:
        df[col] = df[col].fillna("").astype(str) if col in df.columns else ""
    df["duration"] = pd.to_numeric(df["duration"], errors="coerce") if "duration" in df.columns else np.nan
    rate = pd.to_numeric(df["sample_rate"], errors="coerce") if "sample_rate" in df.columns else pd.Series(0, df.index)
    df["duration"] = df["duration"].astype(float)
    df["sample_rate"] = rate.fillna(0).astype(int)
    df["family"] = [family or infer_family(engine, label)
                    for family, engine, label in zip(df["family"], df["engine"], df["label"])]
    extra = [c for c in df.columns if c not in COLUMNS]
    return df[COLUMNS + extra].reset_index(drop=True)


def read_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """Read a manifest CSV; relative paths are resolved against the manifest's folder."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no manifest here; run the collection stage (01_collect_data) first")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = {"path", "label"} - set(df.columns)
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(sorted(missing))}; "
                        "a manifest needs at least path and label")
    base = path.resolve().parent
    df["path"] = [str(p if Path(p).is_absolute() else (base / p).resolve()) for p in df["path"]]
    return to_frame(df)


def write_manifest(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a manifest CSV atomically (paths under its folder relative), keeping a backup of the old one."""
    path = Path(path)
    out = to_frame(df)
    base = path.resolve().parent
    out["path"] = [_relative(p, base) for p in out["path"]]
    text = out.to_csv(index=False, lineterminator="\n")
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return path  # unchanged: no rewrite, no new backup (re-runs stay quiet)
    backup_if_exists(path)
    with atomic_write(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)
    return path


def _relative(path: str, base: Path) -> str:
    """Return `path` relative to `base` when it lies inside it, else absolute."""
    resolved = Path(path).resolve()
    return resolved.relative_to(base).as_posix() if resolved.is_relative_to(base) else str(resolved)


def _problem(row: dict, *, root: Path | None, min_duration: float, max_duration: float) -> tuple[str | None, dict]:
    """Return (reason to quarantine or None, fields to fill in) for one row, decoding its audio."""
    if row["label"] not in LABELS:
        return f"label {row['label']!r} is neither 'human' nor 'ai'", {}
    path = Path(row["path"]) if root is None or Path(row["path"]).is_absolute() else Path(root) / row["path"]
    if not path.is_file():
        return "missing file", {}
    try:
        wave = decode.load(path, sr=SAMPLE_RATE, min_duration=0.0, max_duration=max_duration + 1.0, allow_silent=True)
        meta = decode.info(path)
    except AudioError as exc:
        return f"corrupt or unreadable: {exc.reason}", {}
    fields = {"duration": round(len(wave) / SAMPLE_RATE, 3), "sample_rate": meta.sample_rate,
              "hash": row["hash"] or file_hash(path)}
    if fields["duration"] < min_duration:
        return f"too short ({fields['duration']:.2f} s < min_duration {min_duration:g} s)", fields
    if fields["duration"] > max_duration:
        return f"too long ({fields['duration']:.1f} s > max_duration {max_duration:g} s)", fields
    try:
        dsp.check_wave(wave, SAMPLE_RATE, name=path, min_duration=0.0)
    except AudioError as exc:
        return exc.reason.split(";")[0], fields
    return None, fields


def validate(df: pd.DataFrame, *, root: str | os.PathLike | None = None, min_duration: float = 0.5,
             max_duration: float = 60.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split rows into (kept, quarantined with `reason`): missing, corrupt, silent, too short/long, duplicate hash."""
    df = to_frame(df)
    reasons: list[str] = []
    for i, row in enumerate(tqdm(df.to_dict("records"), desc="validate", leave=False)):
        reason, fields = _problem(row, root=Path(root) if root else None, min_duration=min_duration,
                                  max_duration=max_duration)
        for key, value in fields.items():
            df.at[i, key] = value
        reasons.append(reason or "")
    df["reason"] = reasons
    first: dict[str, str] = {}
    for i, (digest, reason) in enumerate(zip(df["hash"], df["reason"])):
        if reason or not digest:
            continue
        if digest in first:  # same bytes twice: keep the first row (input order is deterministic)
            df.at[i, "reason"] = f"duplicate of {first[digest]} (same content hash {digest})"
        else:
            first[digest] = df.at[i, "path"]
    bad = df["reason"] != ""
    kept = df[~bad].drop(columns="reason").reset_index(drop=True)
    quarantined = df[bad].reset_index(drop=True)
    for reason, count in reason_counts(quarantined).items():
        log.warning("quarantined %d clip(s): %s", count, reason)
    return kept, quarantined


def reason_counts(quarantined: pd.DataFrame) -> pd.Series:
    """How many clips were quarantined for each kind of reason (the reason up to its first detail)."""
    if "reason" not in quarantined or quarantined.empty:
        return pd.Series(dtype=int, name="clips")
    return quarantined["reason"].str.split(r" \(|:", regex=True).str[0].value_counts().rename("clips")


def summary(df: pd.DataFrame, by: list[str] | None = None) -> pd.DataFrame:
    """Clips, speakers and minutes per group of `by` (default: split, label, family, source, engine, reason).

    Every data summary of the project (collection log, data section, model card) is built from this table.
    """
    keys = [c for c in (by or ("split", "label", "family", "source", "engine", "reason")) if c in df.columns]
    if df.empty:
        return pd.DataFrame(columns=keys + ["clips", "speakers", "minutes"])
    table = df.groupby(keys, dropna=False).agg(clips=("path", "size"), speakers=("speaker", "nunique"),
                                               minutes=("duration", "sum"))
    table["minutes"] = (table["minutes"] / 60.0).round(2)
    return table.reset_index()


def tables(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Clips and minutes per class, engine, speaker and split (class columns side by side)."""
    tables = {}
    for key in ("label", "family", "engine", "speaker", "split"):
        if key not in df.columns:
            continue
        keys = [key] if key == "label" else [key, "label"]
        t = summary(df, by=keys).drop(columns=["speakers"] if key == "speaker" else [])
        tables[key] = t.sort_values("clips", ascending=False, kind="stable").reset_index(drop=True)
    if "split" in df.columns:
        pivot = df.pivot_table(index="split", columns="label", values="duration", aggfunc=["size", "sum"], fill_value=0)
        pivot.columns = [f"{'clips' if a == 'size' else 'minutes'} {b}" for a, b in pivot.columns]
        for col in [c for c in pivot.columns if c.startswith("minutes")]:
            pivot[col] = (pivot[col] / 60).round(2)
        tables["split_by_class"] = pivot.reset_index()
    return tables


def describe(df: pd.DataFrame, *, quarantined: int = 0, notes: list[str] | None = None) -> dict:
    """The run's data summary: totals, AI engines per split, collection notes and `tables` as records."""
    ai = df[df["label"] == "ai"]
    engines = {str(k): sorted(map(str, g["engine"].unique())) for k, g in ai.groupby("split")} if "split" in df else {}
    return {"clips": int(len(df)), "minutes": round(float(df["duration"].sum()) / 60, 2),
            "notes": list(notes or []), "ai_engines_by_split": engines,
            "speakers": int(df["speaker"].nunique()), "quarantined": int(quarantined),
            "classes": {str(k): int(v) for k, v in df["label"].value_counts().items()},
            "tables": {k: t.to_dict(orient="records") for k, t in tables(df).items()}}


def by_family(df: pd.DataFrame) -> pd.DataFrame:
    """Clips and minutes per (split,) label, family and engine: what made the data, for the report."""
    return summary(df, by=["split", "label", "family", "engine"]).drop(columns="speakers")


def label_array(frame: pd.DataFrame) -> np.ndarray:
    """Labels as 0 (human) / 1 (ai) in LABELS order, refusing anything else."""
    labels = frame["label"].astype(str).str.lower()
    bad = sorted(set(labels) - set(LABELS))
    if bad:
        raise DataError(f"manifest: unknown label values {bad}; labels must be 'human' or 'ai'")
    return labels.map({name: i for i, name in enumerate(LABELS)}).to_numpy(dtype=np.int64)


def family_of(df: pd.DataFrame) -> pd.Series:
    """Each row's engine family (the engine itself where no family is recorded)."""
    engine = df["engine"].astype(str) if "engine" in df else pd.Series("", index=df.index)
    if "family" not in df:
        return engine
    family = df["family"].fillna("").astype(str)
    return family.where(family != "", engine)
