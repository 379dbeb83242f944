"""The network as the model's stored ONNX graph, run by onnxruntime on CPU behind the numpy front end: no torch.

One graph per window length (frames), loaded from the model directory (voicelib.model.saving names it after the
weights); a graph that is missing, or was exported from other weights, is exported once by the `export`
function the detector passes in (voicelib.model.export.store_graph, which needs torch) and stored for next time.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from voicelib.audio.features import FeatureConfig, NumpyFrontEnd
from voicelib.model.saving import graph_key, stored_graph

log = logging.getLogger(__name__)


def _threads() -> int:
    """onnxruntime's intra-op threads: every CPU this process may use, or torch's setting when torch is loaded."""
    torch = sys.modules.get("torch")  # a caller with torch loaded sets its threads there (benches, tests): follow it
    if torch is not None:
        return torch.get_num_threads()
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class OnnxNetwork:
    """A model directory's network as ONNX graphs behind the numpy front end: windows [N, L] -> logits per head."""

    def __init__(self, model_dir: str | os.PathLike, features: FeatureConfig, *,
                 export: Callable[[Path, int], Path]):
        from threadpoolctl import ThreadpoolController  # scikit-learn's dependency; imported only for this backend

        self.model_dir = Path(model_dir)
        self.front_end = NumpyFrontEnd(features)
        self.export = export
        self.key = graph_key(model_dir)
        self._sessions: dict[int, object] = {}
        self._blas = ThreadpoolController()

    def session(self, frames: int):
        """The onnxruntime session for inputs of `frames` frames (its graph loaded, or exported once and stored)."""
        if frames not in self._sessions:
            import onnxruntime as ort  # optional dependency, imported only for the onnx backend

            path = stored_graph(self.model_dir, frames, key=self.key) or self.export(self.model_dir, frames)
            options = ort.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads = _threads(), 1
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # no busy-waiting between batches
            options.enable_cpu_mem_arena = False  # the arena would keep the largest batch's activations for good
            self._sessions[frames] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            log.debug("loaded %s", path)
        return self._sessions[frames]

    def __call__(self, chunks: np.ndarray) -> dict[str, np.ndarray]:
        """Logits of one batch of windows."""
        # one BLAS thread for the filterbank products: OpenBLAS's workers would spin on, halving onnxruntime's CPUs
        # (the 26-minute benchmark took 9.4 CPU seconds with them, 2.1 without)
        with self._blas.limit(limits=1, user_api="blas"):
            features = self.front_end(chunks)
        session = self.session(features.shape[-1])
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(names, {"features": features})))
