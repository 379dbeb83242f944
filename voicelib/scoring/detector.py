"""The detector: a loaded model with its front end, preparation, threshold and calibration; it scores waves and files.

Files are decoded whole (or streamed block by block when long), prepared as in training, cut into windows
(`windows`), run through the network in batches (torch, or onnxruntime on CPU) and turned into one result per
file (`decisions`). Load a model directory, a fused directory or the store's current model with
`voicelib.scoring.load.load_detector`.
"""
from __future__ import annotations

import copy
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.nn.utils.fusion import fuse_conv_bn_eval

from voicelib.audio import decode, dsp
from voicelib.audio.features import frontend
from voicelib.audio.preprocess import prepare
from voicelib.errors import AudioError, AudioTooLong, ModelError
from voicelib.languages import LANGUAGE_NAMES
from voicelib.metrics import apply_platt
from voicelib.model.export import export_onnx
from voicelib.model.saving import load_model
from voicelib.scoring import stream
from voicelib.scoring.decisions import DEFAULT_BAND, calibration_of, classify, mean_softmax
from voicelib.scoring.windows import chunk_bounds, is_loud, tile, window_length

log = logging.getLogger(__name__)

SILENCE_DBFS = -60.0  # chunks with an RMS level below this are skipped as silent
STREAM_ABOVE = 300.0  # seconds: longer files are streamed (bounded memory) instead of decoded whole


def inference_copy(model):
    """A copy of the network for inference: BatchNorm folded into the convolutions, channels-last layout.

    Same outputs (to float rounding) with about half the CPU time of the eval-mode original.
    """
    fast = copy.deepcopy(model).eval()
    for module in list(fast.modules()):
        for conv, bn in (("conv1", "bn1"), ("conv2", "bn2")):
            c, b = getattr(module, conv, None), getattr(module, bn, None)
            if isinstance(c, torch.nn.Conv2d) and isinstance(b, torch.nn.BatchNorm2d):
                setattr(module, conv, fuse_conv_bn_eval(c, b))
                setattr(module, bn, torch.nn.Identity())
        if isinstance(module, torch.nn.Sequential) and len(module) == 2 and isinstance(module[1], torch.nn.BatchNorm2d):
            module[0], module[1] = fuse_conv_bn_eval(module[0], module[1]), torch.nn.Identity()
    return fast.to(memory_format=torch.channels_last)


def _pick_backend(backend: str, device: str, *, arch: str = "resnet18") -> str:
    """Resolve "auto" to onnx (CPU with onnxruntime installed) or torch; refuse unknown names."""
    if backend not in ("auto", "torch", "onnx"):
        raise ValueError(f"backend {backend!r} unknown; use auto, torch or onnx")
    if backend == "auto":
        try:
            import onnxruntime  # noqa: F401  (optional dependency: its presence picks the backend)
        except ImportError:
            return "torch"
        return "onnx" if device == "cpu" and arch == "resnet18" else "torch"  # LCNN's MFM does not export yet
    return backend


def _calibration(meta: dict) -> tuple[float, float]:
    """Read the Platt (a, b) from model metadata in any of the shapes store may write."""
    cal = meta.get("calibration")
    if cal is None:
        log.warning("model has no calibration; using the uncalibrated sigmoid of the logit")
        return 1.0, 0.0
    if isinstance(cal, dict):
        return float(cal["a"]), float(cal["b"])
    return float(cal[0]), float(cal[1])


@dataclass
class Detector:
    """A loaded model plus its front end, threshold and calibration; load once, score many files."""

    model: object
    features: object
    meta: dict
    threshold: float  # operating threshold on the calibrated probability
    calibration: tuple[float, float]
    sample_rate: int
    device: str = "cpu"
    band: float = DEFAULT_BAND
    silence_dbfs: float = SILENCE_DBFS
    batch_size: int = 64
    backend: str = "torch"  # "torch", or "onnx" (onnxruntime on CPU: about twice as fast)
    languages: list[str] = field(default_factory=lambda: list(LANGUAGE_NAMES))
    max_duration: float | None = None  # seconds; longer files are refused (None: any length)
    stream_above: float = STREAM_ABOVE  # files longer than this (seconds) are decoded block by block
    preprocess: object = None  # the model's PreprocessConfig: waves are prepared exactly as in training
    _sessions: dict = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, model_dir: str | os.PathLike, *, device: str = "cpu", band: float | None = None,
             backend: str = "auto", max_duration: float | None = None) -> "Detector":
        """Load one model directory (device already resolved by `load.load_detector`); ModelError when unusable.

        backend "auto" runs the network in onnxruntime on CPU when it is installed, else in torch;
        max_duration (seconds) refuses longer files, None scores any length.
        """
        try:
            model, meta = load_model(model_dir, device=device)
        except ModelError:
            raise
        except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
            reason = " ".join(str(exc).split())[:300]
            raise ModelError(f"{model_dir}: cannot load the model ({reason}); "
                             "retrain it or pick another model directory") from None
        model.eval()
        cfg = model.cfg.features
        a, b = calibration_of(meta)
        raw_threshold = float(meta.get("threshold", 0.0))
        threshold = (float(apply_platt(raw_threshold, a, b)) if meta.get("threshold_scale", "logit") == "logit"
                     else raw_threshold)
        return cls(model=inference_copy(model), features=frontend(cfg).to(device).eval(),
                   meta=dict(meta, model_dir=str(model_dir)), threshold=threshold, calibration=(a, b),
                   sample_rate=int(cfg.sample_rate), device=device,
                   band=float(meta.get("band", DEFAULT_BAND)) if band is None else band,
                   backend=_pick_backend(backend, device, arch=model.cfg.arch),
                   max_duration=max_duration, preprocess=model.cfg.preprocess)

    def prepared(self, wave: np.ndarray) -> np.ndarray:
        """The wave as the model's training saw it (silence trimmed, level set, zeros dithered), if it asks for that.

        Chunk times then refer to the prepared audio (trimmed silence is not scored).
        """
        if self.preprocess is None or not self.preprocess.active:
            return wave
        return prepare(wave, self.sample_rate, self.preprocess)

    def _session(self, frames: int):
        """An onnxruntime session for inputs of `frames` frames (exported once per chunk length)."""
        if frames not in self._sessions:
            import onnxruntime as ort  # optional dependency, imported only for the onnx backend

            options = ort.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads = torch.get_num_threads(), 1
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # no busy-waiting between batches
            options.enable_cpu_mem_arena = False  # the arena would keep the largest batch's activations for good
            with tempfile.TemporaryDirectory() as tmp:
                path = export_onnx(self.model, Path(tmp) / "model.onnx", frames=frames)
                self._sessions[frames] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return self._sessions[frames]

    def _network(self, feats) -> dict[str, np.ndarray]:
        """Logits of one batch of features, from torch or onnxruntime."""
        if self.backend == "onnx":
            session = self._session(int(feats.shape[-1]))
            names = [o.name for o in session.get_outputs()]
            return dict(zip(names, session.run(names, {"features": feats.cpu().numpy()})))
        return {k: v.float().cpu().numpy() for k, v in self.model(feats).items()}

    def forward(self, chunks: np.ndarray) -> dict[str, np.ndarray]:
        """Run front end and network over [N, L] chunks in batches; return numpy logits per head."""
        outs: dict[str, list[np.ndarray]] = {}
        with torch.inference_mode():
            for i in range(0, len(chunks), self.batch_size):
                y = self._network(self.features(torch.from_numpy(chunks[i:i + self.batch_size]).to(self.device)))
                for key, value in y.items():
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
    def families(self) -> list[str]:
        """The family head's classes ([] when the model has no family head)."""
        return list(getattr(getattr(self.model, "cfg", None), "families", ()) or ())

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
