"""AI speech from Google Translate's TTS (gTTS): timeouts, retries with backoff, pacing, resumption."""
from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import requests
from tqdm.auto import tqdm

from voicelib.audio import decode
from voicelib.data.sources.clips import choose_texts, clip_path, make_row, store_wave
from voicelib.data.sources.online import Pacer, PartialCollection, with_retries
from voicelib.errors import AudioError, SourceUnavailable
from voicelib.languages import language_code, language_name

log = logging.getLogger(__name__)

FAMILY = "online-neural"
ENGINE = "gtts"
API_PATH = "_/TranslateWebserverUi/data/batchexecute"
URL_ENV = "VOICELIB_GTTS_URL"  # e.g. http://127.0.0.1:8000 : a stand-in server with Google's API path


def _client(text: str, *, code: str, tld: str, timeout: float, base_url: str | None):
    """Build a gTTS object whose requests go to `base_url` instead of translate.google.<tld> when given."""
    from gtts import gTTS

    class _Client(gTTS):
        def _prepare_requests(self):
            prepared = super()._prepare_requests()
            if base_url:
                for request in prepared:
                    request.url = f"{base_url.rstrip('/')}/{API_PATH}"
            return prepared

    return _Client(text, lang=code, tld=tld, timeout=timeout)


def fetch(text: str, *, language: str, tld: str = "com", timeout: float = 10.0, retries: int = 2,
          backoff: float = 1.0, base_url: str | None = None, seed: int = 0) -> tuple:
    """Fetch one utterance as (float32 wave, sample rate), retrying; raise SourceUnavailable when unreachable."""
    from gtts.tts import gTTSError

    code = language_code(language)

    def call():
        buffer = io.BytesIO()
        _client(text, code=code, tld=tld, timeout=timeout, base_url=base_url).write_to_fp(buffer)
        data = buffer.getvalue()
        return decode.decode_bytes(data, sr=None, name=f"gTTS reply for {text[:30]!r}"), _mp3_rate(data)

    return with_retries(call, what=f"gTTS ({base_url or f'translate.google.{tld}'})", retries=retries,
                        backoff=backoff, seed=seed,
                        retry_on=(gTTSError, requests.RequestException, OSError, AudioError))


def _mp3_rate(data: bytes) -> int:
    """Return the sample rate of in-memory audio."""
    import soundfile as sf

    return int(sf.info(io.BytesIO(data)).samplerate)


def collect(out_dir: str | Path, *, language: str, limit: int | None = None, seed: int = 0,
            texts: list[str] | None = None, tld: str = "com", timeout: float = 10.0, retries: int = 2,
            backoff: float = 1.0, min_interval: float = 0.5, base_url: str | None = None) -> list[dict]:
    """Speak `texts` with gTTS into out_dir as 16 kHz FLAC; texts already there are skipped (no request).

    Raises PartialCollection (a SourceUnavailable) carrying the rows made so far and the texts left
    when Google cannot be reached, so the caller can fall back to an offline engine for the rest.
    """
    code = language_code(language)
    base_url = base_url if base_url is not None else os.environ.get(URL_ENV) or None
    texts = choose_texts(texts, language=language, limit=limit, seed=seed)
    pacer, rows, made = Pacer(min_interval), [], 0
    voice = f"gtts/{code}/{tld}"
    speaker = f"gtts_{code}_{tld}"  # gTTS has one voice per language and domain: one speaker
    for i, text in enumerate(tqdm(texts, desc=f"gTTS {language_name(language)}", leave=False)):
        path = clip_path(out_dir, ENGINE, voice, text)
        if not path.is_file():
            pacer.wait()
            try:
                wave, sr = fetch(text, language=code, tld=tld, timeout=timeout, retries=retries,
                                 backoff=backoff, base_url=base_url, seed=seed + i)
            except SourceUnavailable as exc:
                raise PartialCollection(str(exc), rows=rows, remaining=texts[i:]) from exc
            store_wave(path, wave, sr)
            made += 1
        rows.append(make_row(path, language=language, label="ai", source="gtts", engine=ENGINE,
                             family=FAMILY, voice=voice, speaker=speaker, group=speaker, text=text))
    log.info("gTTS %s: %d clips (%d new, %d already there)", language, len(rows), made, len(rows) - made)
    return rows
