"""Export a detector to ONNX (checked against torch), store the export with the model, quantise to dynamic int8.

Both take log-mel features [B, n_mels, frames]; the STFT front end (voicelib.audio.features.LogMel) stays
outside, so a runtime computes features itself with the settings in the model's config.json. `store_graph`
exports a model directory's network once per input length and keeps the graph with the model
(voicelib.model.saving names it after the weights), so detection loads it instead of exporting at every start.
"""
from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from voicelib.audio.features import n_bins, n_frames
from voicelib.errors import ModelError
from voicelib.files import atomic_path
from voicelib.model.layers import output_names
from voicelib.model.resnet import ResNet18Detector
from voicelib.model.saving import cache_dir, graph_key, graph_name, load_model, stored_graph

logger = logging.getLogger(__name__)


class _TupleOutputs(nn.Module):
    """Wrap the detector so the exported graph returns (ai, language, multi[, family]) in a fixed order."""

    def __init__(self, model: ResNet18Detector):
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(features)
        return tuple(out[name] for name in output_names(self.model))


def _as_model(model_or_dir: ResNet18Detector | str | os.PathLike) -> ResNet18Detector:
    if isinstance(model_or_dir, nn.Module):
        return model_or_dir

    return load_model(model_or_dir, device="cpu")[0]


def example_features(model: ResNet18Detector, *, batch: int = 2, frames: int | None = None,
                     seed: int = 0) -> torch.Tensor:
    """Random input shaped like the model's front end output (its bins) for one segment of the model's length."""

    cfg = model.cfg
    frames = frames or n_frames(int(round(cfg.segment_seconds * cfg.features.sample_rate)), cfg.features)
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, n_bins(cfg.features), frames, generator=generator) * 3.0 - 8.0


def export_onnx(model_or_dir: ResNet18Detector | str | os.PathLike, out_path: str | os.PathLike, *,
                frames: int | None = None, opset: int = 17, check: bool = True, atol: float = 1e-4) -> Path:
    """Write an ONNX graph (dynamic batch axis; outputs ai, language, multi) and compare it with torch."""
    model = _as_model(model_or_dir).cpu().eval()
    example = example_features(model, frames=frames)
    out_path, heads = Path(out_path), output_names(model)
    with atomic_path(out_path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_TupleOutputs(model), (example,), str(tmp), input_names=["features"],
                          output_names=list(heads), opset_version=opset, dynamo=False,
                          dynamic_axes={"features": {0: "batch"}, **{h: {0: "batch"} for h in heads}})
        if check:
            diff = onnx_max_diff(model, tmp, example_features(model, batch=3, frames=frames, seed=1))
            if diff > atol:
                raise ModelError(f"{out_path}: ONNX outputs differ from torch by {diff:.2e} (> {atol:g}); "
                                 "try another opset or report the torch/onnx versions")
            logger.info("exported %s (max |onnx - torch| = %.2e)", out_path, diff)
    return out_path


def store_graph(model_dir: str | os.PathLike, *, frames: int) -> Path:
    """The model's ONNX graph for `frames` frames: the stored one, else exported once and stored beside the weights.

    A read-only model directory keeps it in saving.cache_dir() (named by the weights' key, so it is never
    mistaken for another model's); when that cannot be written either, a temporary copy serves this process.
    """
    key = graph_key(model_dir)
    found = stored_graph(model_dir, frames, key=key)
    if found is not None:
        return found
    with tempfile.TemporaryDirectory() as tmp:
        exported = export_onnx(model_dir, Path(tmp) / graph_name(frames, key), frames=frames)
        for folder in (Path(model_dir), cache_dir()):
            try:
                with atomic_path(folder / exported.name) as target:
                    shutil.copyfile(exported, target)
            except OSError as exc:
                logger.info("cannot store the ONNX graph in %s (%s)", folder, exc)
                continue
            for stale in set(folder.glob(graph_name(frames, "*"))) - {folder / exported.name}:
                if folder == Path(model_dir):  # exported from other weights: never used again
                    stale.unlink(missing_ok=True)
            logger.info("stored the ONNX graph for %d frames as %s", frames, folder / exported.name)
            return folder / exported.name
        keep = Path(tempfile.mkdtemp(prefix="voicelib-onnx-"))
        atexit.register(shutil.rmtree, keep, ignore_errors=True)
        logger.warning("%s: nowhere to store the exported ONNX graph; every run exports it again "
                       "(make the model directory or $VOICELIB_CACHE writable)", model_dir)
        return Path(shutil.move(exported, keep / exported.name))


def onnx_max_diff(model: ResNet18Detector, onnx_path: str | os.PathLike, features: torch.Tensor) -> float:
    """Largest absolute difference between onnxruntime and torch outputs on `features`."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    heads = output_names(model)
    got = session.run(list(heads), {"features": features.numpy().astype(np.float32)})
    with torch.no_grad():
        want = model.eval()(features)
    return max(float(np.max(np.abs(g - want[h].numpy()))) for g, h in zip(got, heads))


def quantize_dynamic(model_or_dir: ResNet18Detector | str | os.PathLike) -> nn.Module:
    """Dynamic int8 quantisation of the Linear layers (the heads) for CPU inference.

    Dynamic quantisation covers nn.Linear (and RNNs) only; convolutions stay float32, so in a ResNet
    the gain in size and speed is small. Static (calibrated) quantisation would be needed for the convs.
    """
    from copy import deepcopy

    model = deepcopy(_as_model(model_or_dir)).cpu().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated in favour of torchao
        from torch.ao.quantization import quantize_dynamic as _quantize

        return _quantize(model, {nn.Linear}, dtype=torch.qint8)
