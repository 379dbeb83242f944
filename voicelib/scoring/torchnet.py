"""The network in torch: on GPUs, for architectures without an ONNX export (LCNN, Whisper), and without onnxruntime.

`voicelib.scoring.detector` imports this module by name, only when a detector needs torch: the import costs
1.3 s and 200 MB that scoring with a stored ONNX graph never pays.
"""
from __future__ import annotations

import copy
import os

import numpy as np
import torch
from torch.nn.utils.fusion import fuse_conv_bn_eval

from voicelib.audio.features import frontend
from voicelib.model.saving import load_model


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


class TorchNetwork:
    """A model directory's network and its torch front end: windows [N, L] -> numpy logits per head."""

    def __init__(self, model_dir: str | os.PathLike, *, device: str = "cpu"):
        model, _ = load_model(model_dir, device=device)
        self.model = inference_copy(model)
        self.features = frontend(model.cfg.features).to(device).eval()
        self.device = device

    def __call__(self, chunks: np.ndarray) -> dict[str, np.ndarray]:
        """Logits of one batch of windows."""
        with torch.inference_mode():
            out = self.model(self.features(torch.from_numpy(chunks).to(self.device)))
        return {k: v.float().cpu().numpy() for k, v in out.items()}
