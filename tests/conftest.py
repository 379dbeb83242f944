"""Fixtures shared by the whole test suite.

Audio is generated, never downloaded; every fixture is deterministic.

- `make_speech(text=None, *, language="en", sr=16000, variant=None) -> (wave, sr)`: session-scoped,
  cached factory of espeak-ng utterances (fresh writable float32 mono copies); `text=None` uses
  `SAMPLE_TEXTS[language]`.
  Skips the test when espeak-ng cannot load.
- `speech -> (wave, sr)`: one English espeak-ng utterance at 16 kHz (about 2.5 s).
- `speech_file(name="speech.wav", *, language="en", text=None, sr=16000, variant=None, channels=1)
  -> Path`: writes an utterance into the test's `tmp_path`; the extension picks the format
  (wav, flac, mp3, ogg, opus); `channels=2` writes the same voice on both channels.
- `make_tone(freq=440.0, *, duration=1.0, sr=16000, amplitude=0.3) -> np.ndarray` (float32 sine).
- `make_noise(*, duration=1.0, sr=16000, amplitude=0.1, seed=0) -> np.ndarray` (float32 Gaussian).
- `shared_speech -> Path`: the real labelled corpus (../shared/speech beside the checkout, or
  $VOICELIB_SHARED_SPEECH); the test is skipped when it is absent. Read it in place, never copy it.
- `sample_texts -> dict[str, str]`: one short sentence per language code (en, hi, ta, ml, te).
- `one_torch_thread`: runs the test with one torch thread (use with `pytest.mark.usefixtures`).

Models, manifests and stand-ins several test files share (a test file never imports another):
- `tiny_config(*, cmvn=True, **fields) -> ModelConfig`: the small ResNet the training tests use (width 8, 1 s
  segments, 40 mels); `fields` override ModelConfig fields.
- `tiny_budget -> TrainConfig`: two short epochs (48 segments of 8, no mixtures), for trainings inside a test.
- `save_tiny_model(model_dir, *, threshold=0.0, calibration=(1.0, 0.0), seed=0, language_head=True,
  families=()) -> Path`: a width-4 randomly initialised detector written as a complete model directory.
- `toy_manifest(root, *, n_per_class=6, seconds=1.5, sr=16000, languages=("english", "hindi")) -> DataFrame`:
  'human' (modulated, noisy harmonics) and 'ai' (clean harmonics) clips in speaker-disjoint train/val splits.
- `split_manifest(root, *, n=20, seconds=1.5, families=("low", "high")) -> DataFrame`: humans and AI families
  (harmonics in separate bands) split train/val/test by index, 5 test clips per class or family.
- `run_cli(*args, cwd=None) -> CompletedProcess`: `python -m voicelib ARGS...` in a subprocess (text output).
- `free_port() -> int`: a loopback port nobody listens on (for a server to take, or for a refused connection).
- `serve_process(models_root, tmp, *extra_args, keys) -> ServeProcess`: `python -m voicelib serve` in a subprocess
  on a free port with API keys `keys` and its own TMPDIR, once /health answers; it has `url`, `log`,
  `temp_leftovers()`, and `stop()`, which the caller calls.
- `hub_standin(repo, files) -> HubStandIn`: a local stand-in of the Hugging Face hub's file endpoint serving
  `files` of `repo`; HF_ENDPOINT, HF_HOME and HF_HUB_DISABLE_PROGRESS_BARS point at it for the test. It has
  `url`, `cache` (the folder to pass as cache_dir), and `files`, `log`, `fail_first` to change or inspect.
- `check_wave(wave, sr, *, rate, min_seconds=0.5, max_seconds=15.0)`, `check_rows(rows, *, engine, family,
  language)`, `edge_silence(path) -> (lead, tail seconds)`: the engine tests' checks of synthesised speech.

tests/dask_jobs.py stays a plain module: Dask worker processes import it by name to run its stand-in engine.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest

SAMPLE_TEXTS = {
    "en": "The quick brown fox jumps over the lazy dog near the river bank.",
    "hi": "आज मौसम बहुत अच्छा है और हम बाज़ार जा रहे हैं।",
    "ta": "இன்று வானிலை மிகவும் நன்றாக இருக்கிறது, நாங்கள் சந்தைக்குச் செல்கிறோம்.",
    "ml": "ഇന്ന് കാലാവസ്ഥ വളരെ നല്ലതാണ്, ഞങ്ങൾ ചന്തയിലേക്ക് പോകുന്നു.",
    "te": "ఈ రోజు వాతావరణం చాలా బాగుంది, మేము మార్కెట్‌కు వెళ్తున్నాము.",
}
REPO = Path(__file__).resolve().parents[1]
SAVE_SUBTYPES = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".mp3": ("MP3", "MPEG_LAYER_III"),
                 ".ogg": ("OGG", "VORBIS"), ".opus": ("OGG", "OPUS")}


def shared_speech_root() -> Path:
    """Return where the shared speech corpus should be (it may not exist)."""
    env = os.environ.get("VOICELIB_SHARED_SPEECH")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "speech"


@functools.lru_cache(maxsize=64)
def _espeak_utterance(text: str, language: str, sr: int, variant: str | None) -> tuple[np.ndarray, int]:
    """Synthesize and resample one utterance (cached for the session)."""
    import soxr

    from voicelib.data import espeak

    wave, native = espeak.synthesize(text, language=language, variant=variant)
    if native != sr:
        wave = soxr.resample(wave, native, sr, quality="HQ").astype(np.float32)
    wave.setflags(write=False)  # shared between tests: nobody may modify it in place
    return wave, sr


@pytest.fixture(scope="session")
def make_speech() -> Callable[..., tuple[np.ndarray, int]]:
    """Factory of cached espeak-ng utterances: (float32 wave, sr)."""
    from voicelib.data import espeak

    if not espeak.is_available():
        pytest.skip("espeak-ng library (pip package espeakng-loader) is not available")

    def make(text: str | None = None, *, language: str = "en", sr: int = 16000,
             variant: str | None = None) -> tuple[np.ndarray, int]:
        wave, rate = _espeak_utterance(text or SAMPLE_TEXTS[language], language, sr, variant)
        return wave.copy(), rate  # a fresh writable copy: no test can spoil the cache for another

    return make


@pytest.fixture
def speech(make_speech) -> tuple[np.ndarray, int]:
    """One English espeak-ng utterance at 16 kHz."""
    return make_speech()


@pytest.fixture
def speech_file(tmp_path, make_speech) -> Callable[..., Path]:
    """Factory writing an espeak-ng utterance into tmp_path in the format named by the extension."""
    import soundfile as sf

    def write(name: str = "speech.wav", *, language: str = "en", text: str | None = None, sr: int = 16000,
              variant: str | None = None, channels: int = 1) -> Path:
        wave, _ = make_speech(text, language=language, sr=sr, variant=variant)
        data = np.stack([wave] * channels, axis=1) if channels > 1 else wave
        path = tmp_path / name
        fmt, subtype = SAVE_SUBTYPES[path.suffix.lower()]
        sf.write(str(path), data, sr, format=fmt, subtype=subtype)
        return path

    return write


@pytest.fixture(scope="session")
def make_tone() -> Callable[..., np.ndarray]:
    """Factory of float32 sine tones."""
    def tone(freq: float = 440.0, *, duration: float = 1.0, sr: int = 16000, amplitude: float = 0.3) -> np.ndarray:
        t = np.arange(int(round(duration * sr))) / sr
        return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)

    return tone


@pytest.fixture(scope="session")
def make_noise() -> Callable[..., np.ndarray]:
    """Factory of seeded float32 Gaussian noise."""
    def noise(*, duration: float = 1.0, sr: int = 16000, amplitude: float = 0.1, seed: int = 0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return (amplitude * rng.standard_normal(int(round(duration * sr)))).astype(np.float32)

    return noise


@pytest.fixture(scope="session")
def sample_texts() -> dict[str, str]:
    """One short sentence per language code (en, hi, ta, ml, te)."""
    return dict(SAMPLE_TEXTS)


@pytest.fixture(scope="session")
def shared_speech() -> Path:
    """Path of the shared labelled speech corpus, or skip the test when it is absent."""
    root = shared_speech_root()
    if not (root / "manifest.csv").is_file():
        pytest.skip(f"shared speech corpus not found at {root} (set VOICELIB_SHARED_SPEECH to its folder)")
    return root


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Run a test with one torch thread: tiny networks run fastest and most repeatably so on a busy machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---- models, budgets and manifests for trainings inside a test


@pytest.fixture(scope="session")
def tiny_config() -> Callable[..., Any]:
    """Factory of the small ResNet config of the training tests: width 8, 1 s segments, 40 mels."""
    from voicelib.audio.features import FeatureConfig
    from voicelib.model.config import ModelConfig

    def make(*, cmvn: bool = True, **fields: Any) -> ModelConfig:
        return ModelConfig(**{"width": 8, "segment_seconds": 1.0, "features": FeatureConfig(n_mels=40, cmvn=cmvn),
                              **fields})

    return make


@pytest.fixture(scope="session")
def tiny_budget():
    """Two short epochs: 48 segments in batches of 8, no mixtures."""
    from voicelib.training.config import TrainConfig

    return TrainConfig(epochs=2, batch_size=8, lr=3e-3, seed=0, segments_per_epoch=48, mix_prob=0.0)


@pytest.fixture(scope="session")
def save_tiny_model() -> Callable[..., Path]:
    """Factory writing a width-4 randomly initialised detector as a complete model directory."""
    from voicelib.model.config import ModelConfig
    from voicelib.model.registry import build_model
    from voicelib.model.saving import save_model

    def save(model_dir, *, threshold=0.0, calibration=(1.0, 0.0), seed=0, language_head=True, families=()) -> Path:
        cfg = ModelConfig(width=4, blocks=(1, 1, 1, 1), family_head=bool(families), families=tuple(families))
        model = build_model(cfg, seed=seed).eval()
        config = {"model": cfg.to_dict(), "threshold": threshold,
                  "calibration": {"a": calibration[0], "b": calibration[1]}, "threshold_scale": "logit",
                  "language_head_active": language_head}
        return save_model(model, model_dir, config=config, metrics={})

    return save


def _harmonics(f0: float, t: np.ndarray, n: int) -> np.ndarray:
    return sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, n))


def _humanise(wave: np.ndarray, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 3 Hz tremolo and noise: what tells the toy 'human' clips from the clean 'ai' ones."""
    return wave * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.3 * rng.standard_normal(len(t))


def _write_clip(path: Path, wave: np.ndarray, sr: int) -> str:
    import soundfile as sf

    sf.write(path, (0.1 * wave / np.abs(wave).max()).astype(np.float32), sr)
    return str(path)


@pytest.fixture(scope="session")
def toy_manifest() -> Callable[..., Any]:
    """Factory of a two-class manifest of artificial clips with speaker-disjoint train/val splits."""
    import pandas as pd

    def make(root, *, n_per_class=6, seconds=1.5, sr=16000, languages=("english", "hindi")) -> pd.DataFrame:
        rng = np.random.default_rng(0)
        t = np.arange(int(seconds * sr)) / sr
        rows = []
        for label in ("human", "ai"):
            for i in range(n_per_class):
                wave = _harmonics(rng.uniform(100, 220), t, 6)
                if label == "human":
                    wave = _humanise(wave, t, rng)
                rows.append({"path": _write_clip(Path(root) / f"{label}_{i}.flac", wave, sr), "label": label,
                             "language": languages[i % len(languages)], "speaker": f"{label}{i % 3}",
                             "hash": f"{label}{i:04d}", "duration": seconds, "split": "val" if i % 3 == 2 else "train"})
        return pd.DataFrame(rows)

    return make


@pytest.fixture(scope="session")
def split_manifest() -> Callable[..., Any]:
    """Factory of a manifest of humans and AI families (harmonics in separate bands) split train/val/test by index."""
    import pandas as pd

    bands = {"low": (100, 200), "mid": (300, 500), "high": (900, 1100)}

    def make(root, *, n=20, seconds=1.5, families=("low", "high")) -> pd.DataFrame:
        sr = 16000
        rng = np.random.default_rng(1)
        t = np.arange(int(seconds * sr)) / sr
        rows = []
        for label, family in (("human", ""), *(("ai", f) for f in families)):
            for i in range(n):
                wave = _harmonics(rng.uniform(*bands[family or "low"]), t, 4)
                if label == "human":
                    wave = _humanise(wave, t, rng)
                path = _write_clip(Path(root) / f"{label}_{family}_{i}.flac", wave, sr)
                rows.append({"path": path, "label": label, "language": "english", "speaker": f"{label}{family}{i % 5}",
                             "engine": f"{family}-engine" if family else "", "family": family,
                             "hash": f"{label}{family}{i:04d}", "duration": seconds,
                             "split": {0: "test", 3: "val"}.get(i % 4, "train")})
        return pd.DataFrame(rows)

    return make


# ---- processes and servers


@pytest.fixture(scope="session")
def run_cli() -> Callable[..., subprocess.CompletedProcess]:
    """Factory running `python -m voicelib ARGS...` in a subprocess (from the checkout unless `cwd` is given)."""
    def run(*args, cwd=None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "voicelib", *map(str, args)], capture_output=True, text=True,
                              cwd=cwd or REPO, timeout=120)

    return run


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    """Factory of loopback ports nobody listens on (a connection to one is refused at once)."""
    def port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    return port


class ServeProcess:
    """`python -m voicelib serve` in a subprocess with its own TMPDIR, answering /health; stopped by `stop`."""

    def __init__(self, root: Path, tmp: Path, *extra: str, port: int, keys: tuple[str, ...]):
        import httpx

        self.port, self.tmp, self.log = port, tmp, tmp.parent / f"server-{tmp.name}.log"
        tmp.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, VOICELIB_API_KEYS=",".join(keys), TMPDIR=str(tmp), PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen([sys.executable, "-m", "voicelib", "serve", "--port", str(self.port),
                                      "--models-root", str(root), *extra], cwd=REPO, env=env,
                                     stdout=self.log.open("w"), stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("server did not answer /health within 120 s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def temp_leftovers(self) -> list[str]:
        return sorted(p.name for p in self.tmp.iterdir() if p.name.startswith("voicelib-serve-"))


@pytest.fixture(scope="session")
def serve_process(free_port) -> Callable[..., ServeProcess]:
    """Factory starting the HTTP service in a subprocess on a free port (the caller stops it)."""
    def start(root: Path, tmp: Path, *extra: str, keys: tuple[str, ...]) -> ServeProcess:
        return ServeProcess(root, tmp, *extra, port=free_port(), keys=keys)

    return start


class HubStandIn:
    """The hub's file endpoint `/<repo>/resolve/main/<file>` on a loopback port, as huggingface.co answers it.

    Sends ETag and X-Repo-Commit, honours Range (resume), answers 404 with X-Error-Code EntryNotFound, and
    fails the first `fail_first[name]` requests of a file with 503 (retries). `log` records (method, file, Range).
    """

    def __init__(self, repo: str, files: dict[str, bytes], cache: Path):
        self.prefix, self.files, self.cache = f"/{repo}/resolve/main/", dict(files), cache
        self.log: list[tuple[str, str, str]] = []
        self.fail_first: dict[str, int] = {}
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _empty(self, code: int, **headers: str) -> None:
                self.send_response(code)
                for key, value in {**headers, "Content-Length": "0"}.items():
                    self.send_header(key, value)
                self.end_headers()

            def _serve(self, body: bool) -> None:
                path = self.path.split("?")[0]
                name = path[len(hub.prefix):] if path.startswith(hub.prefix) else None
                hub.log.append((self.command, name or self.path, self.headers.get("Range", "")))
                if hub.fail_first.get(name, 0) > 0:
                    hub.fail_first[name] -= 1
                    return self._empty(503)
                if name not in hub.files:
                    return self._empty(404, **{"X-Error-Code": "EntryNotFound"})
                data, start = hub.files[name], 0
                rng = self.headers.get("Range", "")
                if rng.startswith("bytes=") and body:
                    start = int(rng[6:].split("-")[0])
                self.send_response(206 if start else 200)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("X-Repo-Commit", "c" * 40)
                self.send_header("Content-Length", str(len(data) - start))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if body:
                    self.wfile.write(data[start:])

            def do_HEAD(self):  # noqa: N802 - http.server's method names
                self._serve(False)

            def do_GET(self):  # noqa: N802
                self._serve(True)

            def log_message(self, *args):
                pass

        return Handler


@pytest.fixture
def hub_standin(tmp_path, monkeypatch) -> Iterator[Callable[[str, dict[str, bytes]], HubStandIn]]:
    """Factory starting a stand-in hub for `repo`; the hub environment variables point at it for this test."""
    with contextlib.ExitStack() as stack:
        def start(repo: str, files: dict[str, bytes]) -> HubStandIn:
            hub = HubStandIn(repo, files, tmp_path / "hf_cache")
            stack.callback(hub.close)
            monkeypatch.setenv("HF_ENDPOINT", hub.url)
            monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
            monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            return hub

        yield start


# ---- checks shared by the engine tests


@pytest.fixture(scope="session")
def check_wave() -> Callable[..., None]:
    """Check a synthesised wave: mono float32 at `rate`, of a plausible length, not silent, finite."""
    def check(wave: np.ndarray, sr: int, *, rate: int, min_seconds: float = 0.5, max_seconds: float = 15.0) -> None:
        assert sr == rate and wave.ndim == 1 and wave.dtype == np.float32
        assert min_seconds <= len(wave) / sr <= max_seconds
        assert np.isfinite(wave).all() and np.sqrt(np.mean(wave.astype(np.float64) ** 2)) > 1e-3

    return check


@pytest.fixture(scope="session")
def check_rows() -> Callable[..., None]:
    """Check collected rows: they name the engine and family, and point at 16 kHz mono FLAC files."""
    import soundfile as sf

    from voicelib.data.manifest import COLUMNS

    def check(rows: list[dict], *, engine: str, family: str, language: str) -> None:
        assert rows
        for row in rows:
            assert set(COLUMNS) <= set(row) and row["label"] == "ai"
            assert row["engine"] == engine and row["family"] == family and row["language"] == language
            info = sf.info(row["path"])
            assert info.samplerate == 16000 and info.channels == 1 and info.format == "FLAC"

    return check


@pytest.fixture(scope="session")
def edge_silence() -> Callable[..., tuple[float, float]]:
    """Seconds of leading and trailing audio more than 40 dB below a clip's peak."""
    import soundfile as sf

    def measure(path) -> tuple[float, float]:
        wave, sr = sf.read(path, dtype="float32")
        loud = np.flatnonzero(np.abs(wave) > np.abs(wave).max() * 10 ** (-40 / 20))
        return loud[0] / sr, (len(wave) - 1 - loud[-1]) / sr

    return measure
