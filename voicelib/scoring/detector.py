"""The detector: a loaded model with its front end, preparation, threshold and calibration; it scores waves and files.

Files are decoded whole (or streamed block by block when long), prepared as in training, cut into windows
(`windows`), run through the network in batches and turned into one result per file (`decisions`). On CPU the
network is the model's stored ONNX graph behind the numpy front end (`graph`): detection then imports neither
torch nor librosa. Torch (`torchnet`) runs it on GPUs, for architectures without an ONNX export, when
onnxruntime is missing, and exports the graph the first time a model is used. Load a model directory, a fused
directory or the store's current model with `voicelib.scoring.load.load_detector`.
"""
from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from voicelib.audio import decode, dsp
from voicelib.audio.features import NUMPY_KINDS, n_frames
from voicelib.audio.preprocess import prepare
from voicelib.errors import AudioError, AudioTooLong, ModelError
from voicelib.languages import LANGUAGE_NAMES
from voicelib.metrics import apply_platt
from voicelib.model.config import ModelConfig
from voicelib.model.saving import read_meta
from voicelib.scoring import stream
from voicelib.scoring.decisions import DEFAULT_BAND, classify, mean_softmax, operating_point_of
from voicelib.scoring.graph import OnnxNetwork
from voicelib.scoring.windows import chunk_bounds, is_loud, tile, window_length

log = logging.getLogger(__name__)

SILENCE_DBFS = -60.0  # chunks with an RMS level below this are skipped as silent
STREAM_ABOVE = 300.0  # seconds: longer files are streamed (bounded memory) instead of decoded whole
CHUNK_DURATION = 3.0  # seconds: the default window; its ONNX graph is loaded (or exported) with the model


def _torch_side(module: str):
    """voicelib.scoring.torchnet or voicelib.model.export, imported by name when first needed."""
    return importlib.import_module(module)  # both import torch: 1.3 s and 200 MB that a stored ONNX graph never needs


def _store_graph(model_dir, frames: int):
    """Export a model directory's ONNX graph for `frames` frames and store it (torch, once per model)."""
    return _torch_side("voicelib.model.export").store_graph(model_dir, frames=frames)


def _pick_backend(backend: str, device: str, *, cfg: ModelConfig) -> str:
    """Resolve "auto" to onnx (CPU with onnxruntime installed) or torch; refuse unknown names."""
    if backend not in ("auto", "torch", "onnx"):
        raise ValueError(f"backend {backend!r} unknown; use auto, torch or onnx")
    if backend == "onnx" and cfg.features.kind not in NUMPY_KINDS:
        raise ValueError(f"backend onnx needs a numpy front end, and {cfg.features.kind!r} has none; use backend torch")
    if backend == "auto":
        try:
            import onnxruntime  # noqa: F401  (optional dependency: its presence picks the backend)
        except ImportError:
            return "torch"
        # LCNN's MFM and the Whisper encoder do not export yet
        exportable = cfg.arch == "resnet18" and cfg.features.kind in NUMPY_KINDS
        return "onnx" if device == "cpu" and exportable else "torch"
    return backend


def _network(model_dir, cfg: ModelConfig, *, backend: str, device: str) -> Callable[[np.ndarray], dict]:
    """The network runner of a model directory: its ONNX graph (the default window's loaded now) or torch."""
    if backend == "torch":
        return _torch_side("voicelib.scoring.torchnet").TorchNetwork(model_dir, device=device)
    network = OnnxNetwork(model_dir, cfg.features, export=_store_graph)
    network.session(n_frames(window_length(CHUNK_DURATION, cfg.features.sample_rate), cfg.features))
    return network


@dataclass
class Detector:
    """A loaded model plus its front end, threshold and calibration; load once, score many files."""

    network: Callable[[np.ndarray], dict]  # windows [N, L] -> logits per head: graph.OnnxNetwork, torchnet.TorchNetwork
    config: ModelConfig
    meta: dict
    threshold: float  # operating threshold on the calibrated probability
    calibration: tuple[float, float]
    sample_rate: int
    device: str = "cpu"
    band: float = DEFAULT_BAND
    silence_dbfs: float = SILENCE_DBFS
    batch_size: int = 64
    backend: str = "torch"  # "torch", or "onnx" (onnxruntime on CPU: about twice as fast, and no torch import)
    languages: list[str] = field(default_factory=lambda: list(LANGUAGE_NAMES))
    max_duration: float | None = None  # seconds; longer files are refused (None: any length)
    stream_above: float = STREAM_ABOVE  # files longer than this (seconds) are decoded block by block
    preprocess: object = None  # the model's PreprocessConfig: waves are prepared exactly as in training

    @classmethod
    def load(cls, model_dir: str | os.PathLike, *, device: str = "cpu", band: float | None = None,
             backend: str = "auto", max_duration: float | None = None) -> "Detector":
        """Load one model directory (device already resolved by `load.load_detector`); ModelError when unusable.

        backend "auto" runs the network in onnxruntime on CPU when it is installed, else in torch;
        max_duration (seconds) refuses longer files, None scores any length.
        """
        meta = read_meta(model_dir)
        operating_point_of(meta, model_dir)
        try:
            cfg = ModelConfig.from_dict(meta["model"])
        except (ValueError, TypeError) as exc:
            raise ModelError(f"{model_dir}: the model section of config.json is unusable ({exc}); "
                             "re-export the model") from None
        backend = _pick_backend(backend, device, cfg=cfg)
        try:
            network = _network(model_dir, cfg, backend=backend, device=device)
        except ModelError:
            raise
        except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
            reason = " ".join(str(exc).split())[:300]
            raise ModelError(f"{model_dir}: cannot load the model ({reason}); "
                             "retrain it or pick another model directory") from None
        a, b, raw_threshold, scale, model_band = operating_point_of(meta, model_dir)  # checked before any weights
        threshold = float(apply_platt(raw_threshold, a, b)) if scale == "logit" else raw_threshold
        return cls(network=network, config=cfg, meta=dict(meta, model_dir=str(model_dir)), threshold=threshold,
                   calibration=(a, b), sample_rate=int(cfg.features.sample_rate), device=device,
                   band=model_band if band is None else band, backend=backend,
                   max_duration=max_duration, preprocess=cfg.preprocess)

    def prepared(self, wave: np.ndarray) -> np.ndarray:
        """The wave as the model's training saw it (silence trimmed, level set, zeros dithered), if it asks for that.

        Chunk times then refer to the prepared audio (trimmed silence is not scored).
        """
        if self.preprocess is None or not self.preprocess.active:
            return wave
        return prepare(wave, self.sample_rate, self.preprocess)

    def forward(self, chunks: np.ndarray) -> dict[str, np.ndarray]:
        """Run front end and network over [N, L] chunks in batches; return numpy logits per head."""
        outs: dict[str, list[np.ndarray]] = {}
        for i in range(0, len(chunks), self.batch_size):
            for key, value in self.network(np.ascontiguousarray(chunks[i:i + self.batch_size])).items():
                outs.setdefault(key, []).append(value)
        return {k: np.concatenate(v) for k, v in outs.items()}

    def _prepare(self, wave: np.ndarray, sr: int, name: str, chunk_duration: float, overlap: float):
        """Resample, check and cut one wave into windows; return (wave, bounds, kept indices, windows)."""
        wave = dsp.check_wave(np.asarray(wave, dtype=np.float32), sr, name=name, min_duration=0.0)
        if wave.size == 0:
            raise AudioError(name, "no audio samples; pass a non-empty recording")
        if sr != self.sample_rate:
            wave = dsp.resample(wave, sr, self.sample_rate)
        wave = self.prepared(wave)
        length = window_length(chunk_duration, self.sample_rate)
        bounds = chunk_bounds(wave.size, self.sample_rate, chunk_duration=chunk_duration, overlap=overlap)
        floor = 10.0 ** (self.silence_dbfs / 20.0)
        kept, windows = [], []
        for i, (s, e) in enumerate(bounds):
            seg = wave[s:e]
            if is_loud(seg, floor):
                kept.append(i)
                windows.append(tile(seg, length))
        if not kept:
            raise AudioError(name, f"every chunk is below {self.silence_dbfs:g} dBFS (silent); nothing to score")
        return wave, bounds, kept, windows

    def _trained_heads(self) -> dict[str, bool]:
        """Whether the language and multi-speaker heads were trained (an untrained head's output means nothing)."""
        weights = (self.meta.get("training") or {}).get("loss_weights") or {}
        language = self.meta.get("language_head_active", weights.get("language", 1.0) != 0)
        return {"language": bool(language), "multi": weights.get("multi", 1.0) != 0,
                "family": bool(self.families) and weights.get("family", 1.0) != 0}

    @property
    def segment_seconds(self) -> float:
        """The window length the model trained on: detection's default chunk length."""
        return float(self.config.segment_seconds)

    @property
    def families(self) -> list[str]:
        """The family head's classes ([] when the model has no family head)."""
        return list(self.config.families or ())

    def result(self, name: str, n: int, bounds, kept, logits: dict[str, np.ndarray]) -> dict:
        """Assemble the per-file result from the logits of its kept windows."""
        a, b = self.calibration
        sr = self.sample_rate
        mean_logit = float(logits["ai"].mean())
        prob = float(apply_platt(mean_logit, a, b))
        label, confidence = classify(prob, self.threshold, band=self.band)
        lang = mean_softmax(logits["language"])
        chunk_probs = dict(zip(kept, apply_platt(logits["ai"], a, b)))
        chunks = [{"start": round(s / sr, 3), "end": round(e / sr, 3),
                   **({"score": round(float(chunk_probs[i]), 6)} if i in chunk_probs
                      else {"score": None, "skipped": "silent"})}
                  for i, (s, e) in enumerate(bounds)]
        multi = float((1.0 / (1.0 + np.exp(-logits["multi"]))).mean())
        trained = self._trained_heads()
        family = mean_softmax(logits["family"]) if trained["family"] and "family" in logits else None
        return {
            "file": name, "aiScore": round(prob, 6), "classification": label, "confidence": round(confidence, 6),
            "threshold": round(self.threshold, 6), "aiLogit": round(mean_logit, 6),
            "languageDistribution": ({lg: round(float(p), 6) for lg, p in zip(self.languages, lang)}
                                     if trained["language"] else None),
            "multiSpeakerScore": round(multi, 6) if trained["multi"] else None,
            "familyDistribution": ({f: round(float(p), 6) for f, p in zip(self.families, family)}
                                   if family is not None else None),
            "duration": round(n / sr, 3), "chunks": chunks, "skippedChunks": len(bounds) - len(kept),
        }

    def score_arrays(self, waves: Sequence[np.ndarray], sr: int, *, names: Sequence[str] | None = None,
                     chunk_duration: float = 3.0, overlap: float = 0.5) -> list[dict]:
        """Score many waves with one batched forward pass; a bad wave becomes an error entry."""
        names = list(names) if names is not None else [f"<array {i}>" for i in range(len(waves))]
        prepared, windows = [], []
        for wave, name in zip(waves, names):
            try:
                w, bounds, kept, wins = self._prepare(wave, sr, name, chunk_duration, overlap)
            except AudioError as exc:
                prepared.append(exc)
                continue
            prepared.append((name, w.size, bounds, kept, len(windows)))
            windows.extend(wins)
        logits = self.forward(np.stack(windows)) if windows else {}
        results = []
        for item in prepared:
            if isinstance(item, AudioError):
                results.append({"file": item.path, "error": item.reason})
                continue
            name, n, bounds, kept, first = item
            sl = slice(first, first + len(kept))
            results.append(self.result(name, n, bounds, kept, {k: v[sl] for k, v in logits.items()}))
        return results

    def score_array(self, wave: np.ndarray, sr: int, *, chunk_duration: float = 3.0, overlap: float = 0.5,
                    name: str = "<array>") -> dict:
        """Score one wave; raises AudioError when it cannot be scored (silent, empty, NaN)."""
        result = self.score_arrays([wave], sr, names=[name], chunk_duration=chunk_duration, overlap=overlap)[0]
        if "error" in result:
            raise AudioError(name, result["error"])
        return result

    def score_files(self, paths: Sequence[str | os.PathLike], *, chunk_duration: float = 3.0,
                    overlap: float = 0.5) -> list[dict]:
        """Decode and score files together; unreadable files become {"file", "error"} entries."""
        waves, names, slots, results = [], [], [], [None] * len(paths)
        for i, path in enumerate(paths):
            try:
                wave = self._load_whole(path)
                if wave is None:
                    results[i] = self.score_stream(path, chunk_duration=chunk_duration, overlap=overlap)
                    continue
                waves.append(wave)
                names.append(str(path))
                slots.append(i)
            except AudioError as exc:
                results[i] = {"file": str(path), "error": exc.reason}
        for i, res in zip(slots, self.score_arrays(waves, self.sample_rate, names=names,
                                                   chunk_duration=chunk_duration, overlap=overlap)):
            results[i] = res
        return results

    def score_file(self, path: str | os.PathLike, *, chunk_duration: float = 3.0, overlap: float = 0.5) -> dict:
        """Score one file; returns an error entry (not an exception) when the file is unusable."""
        return self.score_files([path], chunk_duration=chunk_duration, overlap=overlap)[0]

    def score_stream(self, path: str | os.PathLike, *, chunk_duration: float = 3.0, overlap: float = 0.5) -> dict:
        """Score one file of any length in bounded memory (block by block); raises AudioError when unusable."""
        return stream.score_stream(self, path, chunk_duration=chunk_duration, overlap=overlap)

    def score_path(self, path: str | os.PathLike, *, chunk_duration: float = 3.0, overlap: float = 0.5) -> dict:
        """Score one file, streamed when long; raises AudioError (AudioTooLong over max_duration) when unusable."""
        wave = self._load_whole(path)
        if wave is None:
            return self.score_stream(path, chunk_duration=chunk_duration, overlap=overlap)
        return self.score_array(wave, self.sample_rate, chunk_duration=chunk_duration, overlap=overlap, name=str(path))

    def _load_whole(self, path: str | os.PathLike) -> np.ndarray | None:
        """The decoded file, or None when it is longer than `stream_above` and must be streamed.

        The decoder checks the header's duration before decoding, so each file is opened once (a header
        check first opened every file twice). Over `max_duration` raises AudioTooLong.
        """
        limit = self.stream_above if self.max_duration is None else min(self.stream_above, self.max_duration)
        try:
            return decode.load(path, sr=self.sample_rate, max_duration=limit)
        except AudioTooLong:
            if self.max_duration is not None and limit >= self.max_duration:
                raise
            return None
