"""Collect a language: human speech first, then AI speech of the same sentences, merged, validated, capped."""
from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from voicelib.data import manifest
from voicelib.data.sources import edge, engines, espeak, fleurs, folder, gtts, synth, vocode
from voicelib.data.sources.online import PartialCollection, say_once
from voicelib.errors import DataError, SourceUnavailable
from voicelib.files import read_json, write_json
from voicelib.languages import language_name

log = logging.getLogger(__name__)

SOURCES = {"fleurs": fleurs, "folder": folder, "espeak": espeak, "gtts": gtts, "edge": edge}
HUMAN_SOURCES = ("fleurs",)
TTS_ENGINES = tuple(name for name, e in engines.ENGINES.items() if not e.vocoder)
VOCODERS = tuple(name for name, e in engines.ENGINES.items() if e.vocoder)
OFFLINE_ENGINE = "espeak"
MANIFEST_FILE, QUARANTINE_FILE = "manifest.csv", "quarantine.csv"  # the data directory's (not a run's)
LEGACY = ("espeak", "gtts", "edge", "piper", "mms")  # engines that run their own collect (fast, or online)
ONLINE_HOSTS = {"gtts": "translate.google.com", "edge": "speech.platform.bing.com", "piper": "huggingface.co",
                "mms": "huggingface.co"}


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
            say_once(f"unreachable:{name}", f"{name} unreachable ({exc}); continuing with the other sources",
                     logger=log)
            notes.append(f"{name} unreachable (no human speech from it in this run): {str(exc)[:160]}")
    for root in local_dirs:
        rows += folder.collect(None, language=language, limit=limit, seed=seed, root=root)
    return rows


def _sentences(rows: list[dict], limit: int | None) -> tuple[list[str] | None, dict[str, str], dict[str, float]]:
    """Sentences human clips speak (first `limit`; None if none), the human speaker and duration of each."""
    keys: dict[str, str] = {}
    durations: dict[str, float] = {}
    for row in rows:
        text = " ".join(str(row.get("text", "")).split())
        if row["label"] == "human" and text and text not in keys:
            keys[text] = row.get("speaker") or row["path"]
            durations[text] = float(row.get("duration") or 0.0) or synth.estimate_seconds(text)
    texts = list(keys)[:limit] if limit is not None else list(keys)
    return (texts or None), keys, durations


def _reachable(host: str, *, timeout: float = 3.0) -> bool:
    """True when a TCP connection to host:443 opens within `timeout` (DNS included)."""
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _names(requested, *, language: str, vocoder: bool) -> list[str]:
    """Resolve "auto" (every installed offline engine, online ones when reachable) plus any names given, checked."""
    requested = [requested] if isinstance(requested, str) else list(requested)
    known = VOCODERS if vocoder else TTS_ENGINES
    for name in requested:
        if name != "auto" and name not in known:
            kind = "vocoder" if vocoder else "TTS engine"
            raise ValueError(f"unknown {kind} {name!r}; choose from {', '.join(known)} or 'auto'")
    if "auto" not in requested:
        return requested
    names = engines.auto(language, vocoder=vocoder, network=False)
    online = [] if vocoder else engines.auto(language, vocoder=False, network=True)
    up = [n for n in online if _reachable(ONLINE_HOSTS.get(n, "huggingface.co"))]
    if set(online) - set(up):
        say_once("offline:auto", f"offline: {', '.join(sorted(set(online) - set(up)))} left out "
                                 f"(their servers cannot be reached)", logger=log)
    return list(dict.fromkeys(names + up + [n for n in requested if n != "auto"]))


def _legacy_rows(data_dir: Path, *, language: str, names, texts, voice_keys, limit, seed, options,
                 workers, scheduler: str = "") -> tuple[list[dict], list[str]]:
    """Speak `texts` with engines that run their own collect; an unreachable online one hands its texts to espeak-ng."""
    rows, notes = [], []
    for name in names:
        module = engines.get(name).load()
        opts = dict(options.get(name, {}))
        if name in ("espeak", "edge", "piper", "mms"):
            opts.setdefault("voice_keys", voice_keys)
        if name in ("piper", "mms"):
            opts.setdefault("workers", workers)
            opts.setdefault("scheduler", scheduler)
        common = dict(language=language, limit=limit, seed=seed, texts=texts)
        try:
            rows += module.collect(data_dir / "audio" / name, **common, **opts)
        except PartialCollection as exc:
            rows += exc.rows
            if OFFLINE_ENGINE in names:  # espeak-ng speaks every text anyway
                say_once(f"unreachable:{name}", f"{name} unreachable ({exc}); espeak-ng is also in this run",
                         logger=log)
                notes.append(f"{name} unreachable: {len(exc.remaining)} texts not spoken by it "
                             "(espeak-ng is in the run)")
                continue
            say_once(f"unreachable:{name}", f"{name} unreachable ({exc}); falling back to espeak-ng offline",
                     logger=log)
            notes.append(f"{name} unreachable: {len(exc.remaining)} texts spoken by espeak-ng instead")
            rows += espeak.collect(data_dir / "audio" / OFFLINE_ENGINE, **{**common, "texts": exc.remaining},
                                   voice_keys=voice_keys, **options.get(OFFLINE_ENGINE, {}))
        except SourceUnavailable as exc:
            say_once(f"unavailable:{name}", f"{name} left out: {exc}", logger=log)
            notes.append(f"{name} unavailable: {exc}")
    return rows, notes


def _caps(names: list[str], *, per_engine: float | None, per_family: float | None) -> dict[str, float | None]:
    """Minutes allowed per engine: its own cap, and an even share of its family's cap."""
    families = [engines.family_of(n) for n in names]
    caps = {}
    for name, family in zip(names, families):
        share = per_family / families.count(family) if per_family is not None else None
        caps[name] = min([c for c in (per_engine, share) if c is not None], default=None)
    return caps


def _shuffled(jobs: list, name: str, seed: int) -> list:
    """The jobs in a seeded order of their own per engine: capped engines speak different sentences."""
    return sorted(jobs, key=lambda j: synth.pick_key(name, Path(j.path).name, seed))


def _planned(data_dir: Path, humans: list[dict], *, language: str, tts: list[str], vocoders: list[str],
             per_clip: int, caps: dict, texts, voice_keys, durations, limit, seed, options) -> tuple[list, list[str]]:
    """Jobs of the offline engines run in the shared worker pool (TTS with `plan`, and the vocoders), capped."""
    jobs, notes = [], []
    for name in tts:
        module = engines.get(name).load()
        try:
            planned = module.plan(data_dir / "audio" / name, language=language, limit=limit, seed=seed, texts=texts,
                                  voice_keys=voice_keys, durations=durations, **options.get(name, {}))
        except SourceUnavailable as exc:
            say_once(f"unavailable:{name}", f"{name} left out: {exc}", logger=log)
            notes.append(f"{name} unavailable: {exc}")
            continue
        jobs += synth.cap_minutes(_shuffled(planned, name, seed), caps.get(name))
    table = {n: (engines.get(n).module, {**engines.get(n).args, **options.get(n, {})}) for n in vocoders}
    copies = vocode.plan(humans, data_dir / "audio" / vocode.SOURCE, engines=table, per_clip=per_clip, seed=seed)
    for name in vocoders:
        mine = [j for j in copies if j.row["engine"] == name]
        jobs += synth.cap_minutes(_shuffled(mine, name, seed), caps.get(name))
    return jobs, notes


def _balance(rows: list[dict], caps: dict, *, seed: int) -> list[dict]:
    """Drop AI rows past their engine's cap in real minutes (files stay on disk and are reused later)."""
    kept, used = [], {}
    for row in sorted(rows, key=lambda r: synth.pick_key(r["engine"], Path(r["path"]).name, seed)):
        cap = caps.get(row["engine"])  # caps are keyed by the engine column (espeak-ng, not espeak)
        if cap is not None and used.get(row["engine"], 0.0) >= cap * 60:
            continue
        used[row["engine"]] = used.get(row["engine"], 0.0) + float(row.get("duration") or 0.0)
        kept.append(row)
    order = {r["path"]: i for i, r in enumerate(rows)}
    return sorted(kept, key=lambda r: order[r["path"]])


def _merge(data_dir: Path, new: pd.DataFrame) -> pd.DataFrame:
    """Existing manifest and quarantine rows (kept in place) updated by the new rows, then the brand-new ones."""
    old = [manifest.read_manifest(p) for p in (data_dir / MANIFEST_FILE, data_dir / QUARANTINE_FILE) if p.is_file()]
    old_df = pd.concat(old, ignore_index=True) if old else pd.DataFrame(columns=manifest.COLUMNS)
    old_df = old_df[manifest.COLUMNS].drop_duplicates("path")
    fresh = new.drop_duplicates("path").set_index("path", drop=False)
    kept = [fresh.loc[p].to_dict() if p in fresh.index else row
            for p, row in zip(old_df["path"], old_df.to_dict("records"))]
    added = fresh[~fresh.index.isin(old_df["path"])].to_dict("records")
    return manifest.to_frame(kept + added or pd.DataFrame(columns=manifest.COLUMNS))


@dataclass(frozen=True)
class CollectConfig:
    """What one collection gathers: human sources, AI engines and vocoders, caps, and where synthesis runs."""

    human_sources: tuple[str, ...] = HUMAN_SOURCES  # online human corpora (FLEURS); skipped, said once, offline
    tts_engines: tuple[str, ...] = ("auto",)  # "auto" (every installed engine; online ones when reachable), names
    local_dirs: tuple[str, ...] = ()  # the user's recordings in the <dir>/<language>/{human,ai}/* layout
    limit: int | None = None  # at most this many clips per source and class
    seed: int = 0
    vocoders: tuple[str, ...] | None = None  # None: "auto" when tts_engines has "auto", plus vocoders named there
    vocoders_per_clip: int = 1  # vocoded copies of each human clip
    max_minutes_per_engine: float | None = 10.0
    max_minutes_per_family: float | None = 20.0
    min_duration: float = 0.5  # seconds; shorter clips are quarantined
    max_duration: float = 60.0  # seconds; longer clips are quarantined
    workers: int | None = None  # synthesis processes (None or 0: one per core)
    dask_scheduler: str = ""  # tcp://HOST:PORT: synthesise on that cluster (data_dir on storage every worker mounts)
    options: dict = field(default_factory=dict)  # keyword options per source name, e.g. {"gtts": {"timeout": 5}}

    def __post_init__(self) -> None:
        for name in ("human_sources", "tts_engines", "local_dirs"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(str(v) for v in value))
        if isinstance(self.vocoders, str):
            object.__setattr__(self, "vocoders", (self.vocoders,))
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"CollectConfig: limit {self.limit} must be a positive number of clips or None")
        if self.vocoders_per_clip < 0 or (self.workers is not None and self.workers < 0):
            raise ValueError("CollectConfig: vocoders_per_clip and workers must be >= 0")
        if not 0 < self.min_duration < self.max_duration:
            raise ValueError(f"CollectConfig: need 0 < min_duration ({self.min_duration}) < max_duration "
                             f"({self.max_duration})")


def collect_all(data_dir: str | Path, config: CollectConfig, *, language: str) -> pd.DataFrame:
    """Collect, merge, validate and write data_dir/manifest.csv (+ quarantine.csv); return the kept rows.

    The AI side speaks the human clips' sentences when known. Only this process writes manifests; synthesis
    workers (local processes or a Dask cluster) write clip files.
    """
    started, data_dir, language = time.time(), Path(data_dir), language_name(language)
    c = config
    human_sources, tts_engines, local_dirs, limit, seed = (c.human_sources, c.tts_engines, c.local_dirs, c.limit,
                                                           c.seed)
    options, vocoders, vocoders_per_clip, workers, dask_scheduler = (dict(c.options), c.vocoders, c.vocoders_per_clip,
                                                                    c.workers, c.dask_scheduler)
    notes: list[str] = []
    humans = _human_rows(data_dir, language=language, human_sources=human_sources, local_dirs=local_dirs,
                         limit=limit, seed=seed, options=options, notes=notes)
    texts, voice_keys, durations = _sentences(humans, limit)
    log.info("%d human clips; AI speaks %s", len(humans),
             f"their {len(texts)} sentences" if texts else "the shipped prompts (no human transcripts)")
    requested = [tts_engines] if isinstance(tts_engines, str) else list(tts_engines)
    if vocoders is None:  # follow tts_engines: "auto" brings the default vocoders, names bring those named
        vocoders = [n for n in requested if n in VOCODERS or n == "auto"]
    tts = _names([n for n in requested if n not in VOCODERS], language=language, vocoder=False)
    vocs = _names(vocoders, language=language, vocoder=True) if vocoders_per_clip else []
    caps = _caps(tts + vocs, per_engine=c.max_minutes_per_engine, per_family=c.max_minutes_per_family)
    planned = [n for n in tts if n not in LEGACY]
    jobs, planned_notes = _planned(data_dir, humans, language=language, tts=planned, vocoders=vocs,
                                   per_clip=vocoders_per_clip, caps=caps, texts=texts, voice_keys=voice_keys,
                                   durations=durations, limit=limit, seed=seed, options=options)
    log.info("AI engines for %s: %s; vocoders: %s (%d per clip)", language, ", ".join(tts) or "none",
             ", ".join(vocs) or "none", vocoders_per_clip)
    failures = synth.render(jobs, workers=workers, desc=f"AI speech {language}", scheduler=dask_scheduler,
                            shared_root=data_dir)
    notes += planned_notes
    notes += [f"{len(failures)} clips failed to synthesise (see the log)"] if failures else []
    legacy, more = _legacy_rows(data_dir, language=language, names=[n for n in tts if n in LEGACY], texts=texts,
                                voice_keys=voice_keys, limit=limit, seed=seed, options=options, workers=workers,
                                scheduler=dask_scheduler)
    row_caps = {engines.get(n).engine_column: cap for n, cap in caps.items()}
    ai = _balance(synth.rows_of(jobs) + legacy, row_caps, seed=seed)
    merged = _merge(data_dir, manifest.to_frame(humans + ai or pd.DataFrame(columns=manifest.COLUMNS)))
    kept, quarantined = manifest.validate(merged, min_duration=c.min_duration, max_duration=c.max_duration)
    manifest.write_manifest(kept, data_dir / MANIFEST_FILE)
    manifest.write_manifest(quarantined, data_dir / QUARANTINE_FILE)
    _report(data_dir, kept, quarantined, notes=notes + more, seconds=time.time() - started)
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
             data_dir / QUARANTINE_FILE)
    by_family = manifest.summary(kept, by=["family", "engine"])
    for row in by_family.itertuples():
        log.info("  %s / %s: %d clips (%.1f min)", row.family, row.engine, row.clips, row.minutes)
    write_json(data_dir / "collect_state" / "last_run.json", {
        "kept": int(len(kept)), "quarantined": int(len(quarantined)), "quarantine_reasons": reasons,
        "by_label": {k: {"clips": int(v["clips"]), "minutes": float(v["minutes"])} for k, v in by_label.iterrows()},
        "by_family_engine": by_family.to_dict(orient="records"),
        "notes": notes, "seconds": round(seconds, 1)})


def last_run_notes(data_dir: str | Path) -> list[str]:
    """What the last collection into `data_dir` had to say (unreachable sources, fallbacks)."""
    path = Path(data_dir) / "collect_state" / "last_run.json"

    return list(read_json(path).get("notes", [])) if path.is_file() else []
