"""AI speech from Microsoft Edge's online neural voices (edge-tts), optional: timeouts, retries, pacing."""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from pathlib import Path

from tqdm.auto import tqdm

from voicelib.audio import decode
from voicelib.config import SAMPLE_RATE
from voicelib.data.sources.clips import choose_texts, clip_path, make_row, pick, store_wave
from voicelib.data.sources.online import Pacer, PartialCollection, with_retries
from voicelib.errors import AudioError, SourceUnavailable
from voicelib.languages import EDGE_VOICES, language_name

log = logging.getLogger(__name__)

FAMILY = "online-neural"
ENGINE = "edge-neural"


async def _speak(text: str, voice: str, *, timeout: float, proxy: str | None) -> bytes:
    """Stream one utterance's MP3 bytes from the Edge read-aloud service."""
    import edge_tts

    comm = edge_tts.Communicate(text, voice, proxy=proxy, connect_timeout=max(1, round(timeout)),
                                receive_timeout=max(1, round(3 * timeout)))
    chunks = [c["data"] async for c in comm.stream() if c["type"] == "audio"]
    return b"".join(chunks)


def _run(coro):
    """Run a coroutine to completion even when the caller (a notebook) already runs an event loop."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def fetch(text: str, voice: str, *, timeout: float = 10.0, retries: int = 2, backoff: float = 1.0,
          proxy: str | None = None, seed: int = 0) -> tuple:
    """Fetch one utterance as (float32 wave at 16 kHz, 16000); raise SourceUnavailable when unreachable."""
    import aiohttp
    import edge_tts.exceptions

    def call():
        data = _run(asyncio.wait_for(_speak(text, voice, timeout=timeout, proxy=proxy), timeout=4 * timeout + 1))
        return decode.decode_bytes(data, sr=SAMPLE_RATE, name=f"edge-tts reply for {text[:30]!r}"), SAMPLE_RATE

    retry_on = (aiohttp.ClientError, asyncio.TimeoutError, edge_tts.exceptions.EdgeTTSException, OSError, AudioError)
    return with_retries(call, what=f"edge-tts ({voice})", retries=retries, backoff=backoff, seed=seed,
                        retry_on=retry_on)


def collect(out_dir: str | Path, *, language: str, limit: int | None = None, seed: int = 0,
            texts: list[str] | None = None, voices: list[str] | None = None, timeout: float = 10.0,
            retries: int = 2, backoff: float = 1.0, min_interval: float = 0.3, proxy: str | None = None,
            voice_keys: dict[str, str] | None = None) -> list[dict]:
    """Speak `texts` with Edge neural voices into out_dir as 16 kHz FLAC; existing clips are skipped.

    Raises PartialCollection (a SourceUnavailable) with the rows made and texts left when offline.
    """
    voices = list(voices or EDGE_VOICES[language_name(language)])
    texts = choose_texts(texts, language=language, limit=limit, seed=seed)
    keys = voice_keys or {}
    pacer, rows, made = Pacer(min_interval), [], 0
    for i, text in enumerate(tqdm(texts, desc=f"edge-tts {language_name(language)}", leave=False)):
        voice = pick(voices, "voice", keys.get(text, text), seed=seed)
        path = clip_path(out_dir, ENGINE, voice, text)
        if not path.is_file():
            pacer.wait()
            try:
                wave, sr = fetch(text, voice, timeout=timeout, retries=retries, backoff=backoff, proxy=proxy,
                                 seed=seed + i)
            except SourceUnavailable as exc:
                raise PartialCollection(str(exc), rows=rows, remaining=texts[i:]) from exc
            store_wave(path, wave, sr)
            made += 1
        speaker = f"edge_{voice}"
        rows.append(make_row(path, language=language, label="ai", source="edge", engine=ENGINE,
                             family=FAMILY, voice=voice, speaker=speaker, group=speaker, text=text))
    log.info("edge-tts %s: %d clips (%d new, %d already there)", language, len(rows), made, len(rows) - made)
    return rows
