"""Neural AI speech from Meta's MMS-TTS (VITS) models `facebook/mms-tts-<iso3>` on the Hugging Face hub, online.

Optional: needs `transformers` (and torch). Files are fetched one by one with resume, retries and
timeouts like FLEURS; when the hub is unreachable the texts go back to collect_all as a
PartialCollection, which hands them to espeak-ng offline. VITS samples noise: seeded with torch.
"""
from __future__ import annotations

import functools
import importlib.util
import logging
from pathlib import Path

import numpy as np

from voicelib.data.sources.clips import choose_texts
from voicelib.data.sources.online import PartialCollection
from voicelib.data.sources.piper import download as hub_download
from voicelib.data.sources.synth import collect_jobs, plan_tts
from voicelib.errors import SourceUnavailable
from voicelib.languages import language_code, language_name

log = logging.getLogger(__name__)

ENGINE = "mms"
FAMILY = "online-neural"
LANGUAGES = ("english", "hindi", "tamil", "malayalam", "telugu")
INSTALL = "pip install transformers (MMS-TTS runs on the torch already installed)"
REPOS = {"en": "facebook/mms-tts-eng", "hi": "facebook/mms-tts-hin", "ta": "facebook/mms-tts-tam",
         "ml": "facebook/mms-tts-mal", "te": "facebook/mms-tts-tel"}
FILES = ("config.json", "vocab.json", "tokenizer_config.json", "model.safetensors")
OPTIONAL_FILES = ("special_tokens_map.json", "added_tokens.json")
SPEEDS = (0.9, 1.0, 1.1)  # speaking_rate


def available() -> tuple[bool, str]:
    """Return (True, "") when transformers is installed (the hub is checked when collecting), else how to install."""
    if importlib.util.find_spec("transformers") is None:
        return False, f"transformers is not installed; {INSTALL}"
    return True, ""


def fetch(repo: str, *, options: dict) -> Path:
    """Download one MMS model's files (resuming partial ones) and return the local folder holding them."""
    folder = None
    for filename in FILES:
        folder = hub_download(filename, repo=repo, name="MMS-TTS", **options).parent
    for filename in OPTIONAL_FILES:
        try:
            hub_download(filename, repo=repo, name="MMS-TTS", **{**options, "retries": 0})
        except SourceUnavailable:
            pass  # not every model has them
    return folder


@functools.lru_cache(maxsize=2)
def _model(folder: str):
    """Load one MMS model and its tokenizer once per process (one torch thread: workers parallelise)."""
    import torch
    from transformers import VitsModel, VitsTokenizer

    torch.set_num_threads(1)
    return VitsModel.from_pretrained(folder).eval(), VitsTokenizer.from_pretrained(folder)


def synthesize(text: str, *, language: str, voice: str, speed: float = 1.0, seed: int = 0) -> tuple[np.ndarray, int]:
    """Speak `text` with the MMS model in folder `voice`; return (float32 wave, its rate). Deterministic per seed."""
    del language  # the model fixes the language
    import torch

    model, tokenizer = _model(voice)
    inputs = tokenizer(text, return_tensors="pt")
    if inputs["input_ids"].shape[-1] < 2:
        raise ValueError(f"mms: the tokenizer of {voice} knows no character of {text!r}")
    model.speaking_rate = float(speed)
    torch.manual_seed(seed)
    with torch.no_grad():
        wave = model(**inputs).waveform[0].numpy()
    return wave.astype(np.float32), int(model.config.sampling_rate)


def collect(out_dir: str | Path, *, language: str, limit: int | None = None, seed: int = 0,
            texts: list[str] | None = None, voice_keys: dict[str, str] | None = None,
            endpoint: str | None = None, revision: str = "main", cache_dir: str | Path | None = None,
            retries: int = 2, backoff: float = 1.0, timeout: float = 30.0, workers: int | None = 1,
            scheduler: str = "") -> list[dict]:
    """Speak `texts` with the MMS-TTS model of `language` from the hub; unreachable hub -> PartialCollection."""
    ok, why = available()
    if not ok:
        raise SourceUnavailable(f"mms: {why}")
    repo = REPOS.get(language_code(language))
    if repo is None:
        raise SourceUnavailable(f"mms: no MMS-TTS model listed for {language_name(language)}")
    options = dict(endpoint=endpoint, revision=revision, cache_dir=cache_dir, retries=retries, backoff=backoff,
                   timeout=timeout, seed=seed)
    try:
        folder = fetch(repo, options=options)
    except SourceUnavailable as exc:
        remaining = choose_texts(texts, language=language, limit=limit, seed=seed)
        raise PartialCollection(str(exc), rows=[], remaining=remaining) from exc
    voice = repo.split("/")[-1]
    jobs = plan_tts(__name__, out_dir, engine=ENGINE, family=FAMILY, language=language, voices=[voice], limit=limit,
                    seed=seed, texts=texts, voice_keys=voice_keys, speeds=SPEEDS)
    for job in jobs:
        job.args["voice"] = str(folder)
    return collect_jobs(jobs, workers=workers, desc=f"mms {language_name(language)}", scheduler=scheduler)
