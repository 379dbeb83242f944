"""Score audio files chunk by chunk with a trained detector: AI probability, decision, language, chunks.

Chunking: windows of `chunk_duration` seconds every `chunk_duration * (1 - overlap)` seconds. When the
last full window stops short of the end, one more (partial) window covers the tail, so every sample is
scored; a file shorter than one window is one partial window. Partial windows are tiled (the audio is
repeated) up to the window length rather than zero-padded, because runs of exact digital zeros are a
known source cue. Windows whose RMS is below `silence_dbfs` are skipped and listed as skipped.

Language distribution, multi-speaker score and family distribution (attribution: which generator family
an AI clip most resembles, from the optional family head) are null when the model's training left that head
untrained (one training language; fine-tuning mode "head").

Clip score: the mean of the AI logits of the scored windows, mapped through the Platt calibration the
model carries (fitted on validation); the decision compares that probability with the model's
validation threshold, and probabilities within `band` of the threshold are INCONCLUSIVE (the model's band,
sized on validation so that decisions outside it are 95 % right there; 0.1 for older models).
"""
from __future__ import annotations

import glob
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from voicelib.audio import decode, dsp
from voicelib.errors import AudioError, AudioTooLong, ModelError
from voicelib.languages import LANGUAGE_NAMES
from voicelib.metrics import apply_platt

log = logging.getLogger(__name__)

HUMAN, AI, INCONCLUSIVE = "HUMAN", "AI_GENERATED", "INCONCLUSIVE"
FUSED_FILES = ("fusion.json", "ensemble.json")  # voicelib.scoring.fusion's FUSION_FILE and ENSEMBLE_FILE
DEFAULT_BAND = 0.1  # probabilities within +-0.1 of the threshold probability are inconclusive
SILENCE_DBFS = -60.0  # chunks with an RMS level below this are skipped as silent
STREAM_ABOVE = 300.0  # seconds: longer files are streamed (bounded memory) instead of decoded whole


def chunk_bounds(n_samples: int, sr: int, *, chunk_duration: float = 3.0,
                 overlap: float = 0.5) -> list[tuple[int, int]]:
    """Return (start, end) sample indices of the scoring windows; the last one may be partial."""
    if chunk_duration <= 0:
        raise ValueError(f"chunk_duration must be positive, got {chunk_duration}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    length = max(int(round(chunk_duration * sr)), 1)
    hop = max(int(round(length * (1.0 - overlap))), 1)
    if n_samples <= length:
        return [(0, n_samples)]
    bounds = [(s, s + length) for s in range(0, n_samples - length + 1, hop)]
    if bounds[-1][1] < n_samples:
        start = bounds[-1][0] + hop
        bounds.append((start, n_samples))
    return bounds


def _tile(segment: np.ndarray, length: int) -> np.ndarray:
    """Repeat a short segment until it fills `length` samples."""
    if segment.size >= length:
        return segment[:length]
    return np.resize(segment, length)


def _mean_softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax of each window's logits [N, K], averaged over the windows."""
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).mean(axis=0)


def classify(prob: float, threshold: float, *, band: float = DEFAULT_BAND) -> tuple[str, float]:
    """Return (classification, confidence); confidence is the distance from the threshold scaled to [0, 1]."""
    if prob >= threshold:
        confidence = (prob - threshold) / max(1.0 - threshold, 1e-9)
    else:
        confidence = (threshold - prob) / max(threshold, 1e-9)
    if abs(prob - threshold) < band:
        return INCONCLUSIVE, float(confidence)
    return (AI if prob >= threshold else HUMAN), float(confidence)


def inference_copy(model):
    """A copy of the network for inference: BatchNorm folded into the convolutions, channels-last layout.

    Same outputs (to float rounding) with about half the CPU time of the eval-mode original.
    """
    import copy

    import torch
    from torch.nn.utils.fusion import fuse_conv_bn_eval

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
            import onnxruntime  # noqa: F401
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
    def load(cls, model_dir: str | os.PathLike | None = None, *, language: str | None = None,
             models_root: str | os.PathLike = "models", device: str = "cpu", band: float | None = None,
             backend: str = "auto", max_duration: float | None = None) -> "Detector":
        """Load a model directory (or the current model of `language` in the store); ModelError when unusable.

        A directory with fusion.json or ensemble.json loads as a voicelib.scoring.fusion.FusedDetector (same interface).

        backend "auto" runs the network in onnxruntime on CPU when it is installed, else in torch;
        max_duration (seconds) refuses longer files, None scores any length.
        """
        if max_duration is not None and max_duration <= 0:
            raise ValueError(f"max_duration must be positive seconds or None, got {max_duration}")
        import torch

        from voicelib.audio.features import frontend
        from voicelib.model import store
        from voicelib.model.saving import load_model

        if (model_dir is None) == (language is None):
            raise ValueError("Detector.load: give either a model directory or a language, not both or neither")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ModelError(f"device {device!r} requested but no CUDA GPU is available; use device='cpu'")
        if model_dir is None:
            model_dir = store.current(language, root=models_root)
        if not Path(model_dir).is_dir():
            raise ModelError(f"{model_dir}: no such model directory; "
                             "pass a folder holding model.safetensors and config.json")
        if any((Path(model_dir) / name).is_file() for name in FUSED_FILES):  # a fused model or ensemble: one model
            from voicelib.scoring import (
                fusion,  # imported only then: it brings pandas and the GMM (memory when streaming)
            )

            return fusion.FusedDetector.load(model_dir, device=device, band=band, backend=backend,
                                             max_duration=max_duration)
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
        a, b = _calibration(meta)
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
        from voicelib.audio.preprocess import prepare

        return prepare(wave, self.sample_rate, self.preprocess)

    def _session(self, frames: int):
        """An onnxruntime session for inputs of `frames` frames (exported once per chunk length)."""
        if frames not in self._sessions:
            import tempfile

            import onnxruntime as ort
            import torch

            from voicelib.model.export import export_onnx

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

    def _forward(self, chunks: np.ndarray) -> dict[str, np.ndarray]:
        """Run front end and network over [N, L] chunks in batches; return numpy logits per head."""
        import torch

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
        length = int(round(chunk_duration * self.sample_rate))
        bounds = chunk_bounds(wave.size, self.sample_rate, chunk_duration=chunk_duration, overlap=overlap)
        floor = 10.0 ** (self.silence_dbfs / 20.0)
        kept, windows = [], []
        for i, (s, e) in enumerate(bounds):
            seg = wave[s:e]
            if np.sqrt(np.mean(np.square(seg, dtype=np.float64))) >= floor:
                kept.append(i)
                windows.append(_tile(seg, length))
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

    def _result(self, name: str, n: int, bounds, kept, logits: dict[str, np.ndarray]) -> dict:
        """Assemble the per-file result from the logits of its kept windows."""
        a, b = self.calibration
        sr = self.sample_rate
        mean_logit = float(logits["ai"].mean())
        prob = float(apply_platt(mean_logit, a, b))
        label, confidence = classify(prob, self.threshold, band=self.band)
        lang = _mean_softmax(logits["language"])
        chunk_probs = dict(zip(kept, apply_platt(logits["ai"], a, b)))
        chunks = [{"start": round(s / sr, 3), "end": round(e / sr, 3),
                   **({"score": round(float(chunk_probs[i]), 6)} if i in chunk_probs
                      else {"score": None, "skipped": "silent"})}
                  for i, (s, e) in enumerate(bounds)]
        multi = float((1.0 / (1.0 + np.exp(-logits["multi"]))).mean())
        trained = self._trained_heads()
        family = _mean_softmax(logits["family"]) if trained["family"] and "family" in logits else None
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
        logits = self._forward(np.stack(windows)) if windows else {}
        results = []
        for item in prepared:
            if isinstance(item, AudioError):
                results.append({"file": item.path, "error": item.reason})
                continue
            name, n, bounds, kept, first = item
            sl = slice(first, first + len(kept))
            results.append(self._result(name, n, bounds, kept, {k: v[sl] for k, v in logits.items()}))
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
        from voicelib.scoring.stream import score_stream

        return score_stream(self, path, chunk_duration=chunk_duration, overlap=overlap)

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


def expand_paths(paths: Iterable[str | os.PathLike]) -> tuple[list[str], list[dict]]:
    """Expand files, directories (recursively, audio extensions only) and globs; return (files, error entries)."""
    from voicelib.audio.decode import SUPPORTED_EXTENSIONS

    out: list[str] = []
    problems: list[dict] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(str(f) for f in p.rglob("*") if f.is_file() and f.suffix.lower() in SUPPORTED_EXTENSIONS)
            out.extend(found)
            if not found:
                problems.append({"file": str(raw),
                                 "error": "directory holds no audio files with a supported extension"})
        elif not p.exists() and glob.has_magic(str(raw)):
            matches = [m for m in sorted(glob.glob(str(raw), recursive=True)) if Path(m).is_file()]
            out.extend(matches)
            if not matches:
                problems.append({"file": str(raw), "error": "pattern matches no file; check the pattern and quote it"})
        else:
            out.append(str(raw))
    return list(dict.fromkeys(out)), problems


def detect_paths(paths: Iterable[str | os.PathLike], detector: Detector, *, chunk_duration: float = 3.0,
                 overlap: float = 0.5, files_per_batch: int = 16) -> tuple[list[dict], int]:
    """Score every file the paths expand to, a few files per batch; return (results, number of failures)."""
    files, results = expand_paths(paths)
    for i in range(0, len(files), files_per_batch):
        results.extend(detector.score_files(files[i:i + files_per_batch], chunk_duration=chunk_duration,
                                            overlap=overlap))
    n_failed = sum("error" in r for r in results)
    log.info("scored %d files, %d failed", len(results) - n_failed, n_failed)
    return results, n_failed
