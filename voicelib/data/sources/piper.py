"""Neural AI speech from Piper voices (VITS) downloaded from the Hugging Face hub repo rhasspy/piper-voices, online.

The hub layout: `voices.json` at the root (one entry per voice key `<lang_REGION>-<name>-<quality>`,
with its `files`), and each voice as `<lang>/<lang_REGION>/<name>/<quality>/<key>.onnx` + `.onnx.json`.
Downloads resume, retry with backoff and time out like FLEURS; when the hub is unreachable the texts
go back to collect_all as a PartialCollection, which hands them to espeak-ng offline.
"""
from __future__ import annotations

import functools
import importlib.util
import logging
import os
from pathlib import Path

import numpy as np

from voicelib.data.sources.clips import choose_texts
from voicelib.data.sources.fleurs import _httpx_error
from voicelib.data.sources.online import PartialCollection, with_retries
from voicelib.data.sources.synth import collect_jobs, plan_tts
from voicelib.errors import SourceUnavailable
from voicelib.files import read_json
from voicelib.languages import language_code, language_name

log = logging.getLogger(__name__)

ENGINE = "piper"
FAMILY = "online-neural"
REPO = "rhasspy/piper-voices"
LANGUAGES = ("english", "hindi", "malayalam", "telugu")  # what the hub had when written; voices.json decides
INSTALL = "pip install piper-tts==1.8.0"
QUALITIES = ("medium", "high", "low", "x_low")  # preferred first
SPEEDS = (0.9, 1.0, 1.1)  # length_scale


def available() -> tuple[bool, str]:
    """Return (True, "") when piper-tts is installed (the hub is checked when collecting), else how to install."""
    if importlib.util.find_spec("piper") is None:
        return False, f"piper-tts is not installed; {INSTALL}"
    return True, ""


def download(filename: str, *, repo: str = REPO, name: str = "Piper", endpoint: str | None = None,
             revision: str = "main", cache_dir: str | Path | None = None, retries: int = 2, backoff: float = 1.0,
             timeout: float = 30.0, seed: int = 0) -> Path:
    """Download one file of a hub model repo (rhasspy/piper-voices by default), resuming a partial download."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError


    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None

    def call() -> Path:
        try:
            return Path(hf_hub_download(repo, filename, revision=revision, endpoint=endpoint, cache_dir=cache_dir,
                                        etag_timeout=timeout))
        except EntryNotFoundError as exc:  # not transient: say so at once
            raise SourceUnavailable(f"{name}: {filename} not found in {repo} "
                                    f"on {endpoint or 'the hub'} ({exc})") from exc
        except RuntimeError as exc:  # huggingface_hub 1.16 closes its client after a connect error, then reuses it
            if "client has been closed" not in str(exc):
                raise
            raise ConnectionError(f"cannot connect to {endpoint or 'huggingface.co'}") from exc

    return with_retries(call, what=f"{name} download of {filename} from {endpoint or 'huggingface.co'}",
                        retries=retries, backoff=backoff, seed=seed,
                        retry_on=(OSError, HfHubHTTPError, LocalEntryNotFoundError, _httpx_error()))


def voice_files(key: str, entry: dict) -> tuple[str, str]:
    """The hub paths of a voice's model and config, from its voices.json entry (or the layout)."""
    files = [f for f in entry.get("files", {}) if f.endswith(".onnx")]
    if files:
        return files[0], files[0] + ".json"
    lang = entry.get("language", {})
    code, family = lang.get("code", key.split("-")[0]), lang.get("family", key.split("_")[0])
    name, quality = entry.get("name", key.split("-")[1]), entry.get("quality", key.split("-")[-1])
    model = f"{family}/{code}/{name}/{quality}/{code}-{name}-{quality}.onnx"
    return model, model + ".json"


def voices_for(catalog: dict, language: str, *, max_voices: int | None = 3) -> list[str]:
    """Voice keys of `language` in voices.json: one quality per speaker name (preferred quality first)."""
    code = language_code(language)
    best: dict[str, tuple[int, str]] = {}
    for key, entry in catalog.items():
        lang = entry.get("language", {})
        if (lang.get("family") or key.split("_")[0]) != code:
            continue
        quality = entry.get("quality", key.split("-")[-1])
        rank = QUALITIES.index(quality) if quality in QUALITIES else len(QUALITIES)
        name = f"{lang.get('code', '')}-{entry.get('name', key)}"
        if name not in best or (rank, key) < best[name]:
            best[name] = (rank, key)
    keys = sorted(key for _, key in best.values())
    return keys if max_voices is None else keys[:max_voices]


@functools.lru_cache(maxsize=8)
def _voice(model: str):
    """Load one Piper voice once per process."""
    from piper import PiperVoice

    return PiperVoice.load(model)


def synthesize(text: str, *, language: str, voice: str, speed: float = 1.0, seed: int = 0) -> tuple[np.ndarray, int]:
    """Speak `text` with the Piper model at path `voice` (speed is a length scale); return (float32 wave, rate)."""
    del language, seed  # the voice fixes the language; VITS noise is inside the model
    from piper import SynthesisConfig

    model = _voice(voice)
    chunks = [c.audio_float_array for c in model.synthesize(text, syn_config=SynthesisConfig(length_scale=speed))]
    if not chunks:
        raise ValueError(f"piper: no audio for {text!r}")
    return np.concatenate(chunks).astype(np.float32), int(model.config.sample_rate)


def _fetch_voices(language: str, *, max_voices: int | None, options: dict) -> dict[str, Path]:
    """Download voices.json and the chosen voices of `language`; return {voice key: local model path}."""
    catalog = read_json(download("voices.json", **options))
    models = {}
    for key in voices_for(catalog, language, max_voices=max_voices):
        model, config = voice_files(key, catalog[key])
        local = download(model, **options)
        download(config, **options)  # hf_hub_download puts it beside the model in the same snapshot
        models[key] = local
    return models


def collect(out_dir: str | Path, *, language: str, limit: int | None = None, seed: int = 0,
            texts: list[str] | None = None, voice_keys: dict[str, str] | None = None, max_voices: int | None = 3,
            endpoint: str | None = None, revision: str = "main", cache_dir: str | Path | None = None,
            retries: int = 2, backoff: float = 1.0, timeout: float = 30.0, workers: int | None = 1,
            scheduler: str = "") -> list[dict]:
    """Speak `texts` with Piper voices of `language` from the hub; unreachable hub -> PartialCollection."""
    ok, why = available()
    if not ok:
        raise SourceUnavailable(f"piper: {why}")
    options = dict(endpoint=endpoint, revision=revision, cache_dir=cache_dir, retries=retries, backoff=backoff,
                   timeout=timeout, seed=seed)
    try:
        models = _fetch_voices(language, max_voices=max_voices, options=options)
    except SourceUnavailable as exc:
        remaining = choose_texts(texts, language=language, limit=limit, seed=seed)
        raise PartialCollection(str(exc), rows=[], remaining=remaining) from exc
    if not models:
        log.info("Piper has no %s voice on %s", language_name(language), endpoint or "the hub")
        return []
    jobs = plan_tts(__name__, out_dir, engine=ENGINE, family=FAMILY, language=language, voices=sorted(models),
                    limit=limit, seed=seed, texts=texts, voice_keys=voice_keys, speeds=SPEEDS)
    for job in jobs:
        job.args["voice"] = str(models[job.args["voice"]])
    return collect_jobs(jobs, workers=workers, desc=f"piper {language_name(language)}", scheduler=scheduler)
