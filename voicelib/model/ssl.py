"""Optional pretrained self-supervised front end (wav2vec2 / XLS-R / WavLM via `transformers`) with a light head.

The encoder is frozen; what trains is a softmax-weighted sum of its hidden layers, mean pooling over time, a
small projection and the usual `ai` / `language` / `multi` heads (the recipe behind the best published
cross-dataset anti-spoofing results, e.g. Tak et al. 2022 with XLS-R). Unlike the spectrogram models it
takes waves [B, T] at 16 kHz, not features: its front end is the identity.

Untested with real weights here: the hub is unreachable on our machines, so only tiny randomly initialised
configurations and the download code against a local stand-in of the hub are tested. Needs
`pip install transformers==5.17.0`.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from voicelib.data.sources.online import HubMissing, hub_file
from voicelib.errors import ModelError
from voicelib.languages import LANGUAGE_NAMES

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "facebook/wav2vec2-xls-r-300m"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # safetensors first: loading it never runs code
INSTALL = "pip install transformers==5.17.0"


def require_transformers() -> Any:
    """Import transformers or raise a one-line ModelError saying how to install it."""
    try:
        import transformers
    except ImportError:
        raise ModelError(f"the SSL front end needs the transformers package; {INSTALL}") from None
    return transformers


@dataclasses.dataclass
class SSLConfig:
    """Settings of an SSL detector; `model_name` is a hub id or a local folder with config.json + weights."""

    model_name: str = DEFAULT_MODEL
    revision: str = "main"
    projection: int = 128  # size of the embedding fed to the heads
    dropout: float = 0.2
    n_languages: int = len(LANGUAGE_NAMES)
    segment_seconds: float = 3.0
    frozen: bool = True  # False fine-tunes the whole encoder (needs a GPU and far more data)

    def __post_init__(self) -> None:
        if self.projection < 1 or not 0.0 <= self.dropout < 1.0 or self.segment_seconds <= 0:
            raise ValueError(f"SSLConfig: projection {self.projection} must be >= 1, dropout {self.dropout} in [0, 1), "
                             f"segment_seconds {self.segment_seconds} positive")

    @property
    def embedding_dim(self) -> int:
        """Size of the embedding fed to the heads."""
        return self.projection

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SSLConfig:
        """Rebuild from `to_dict()` output, refusing unknown keys."""
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"SSLConfig: unknown keys {sorted(unknown)}; the config was written by another version")
        return cls(**data)


def download(name: str, *, revision: str = "main", cache_dir: str | Path | None = None, retries: int = 2,
             timeout: float = 30.0, endpoint: str | None = None) -> Path:
    """Fetch config.json and the weights of hub model `name` (resuming partial files); return the local folder."""
    options = {"revision": revision, "cache_dir": cache_dir, "retries": retries, "timeout": timeout,
               "endpoint": endpoint}
    try:
        config = hub_file(name, "config.json", **options)
    except HubMissing:
        raise ModelError(f"{name}: no config.json on {endpoint or 'the hub'}; check the model name") from None
    for filename in WEIGHT_FILES:
        try:
            hub_file(name, filename, **options)
            return config.parent
        except HubMissing:
            continue
    raise ModelError(f"{name}: none of {', '.join(WEIGHT_FILES)} on {endpoint or 'the hub'}; check the model name")


def load_encoder(name: str, **download_options: Any) -> nn.Module:
    """The pretrained encoder of a local folder or hub id (downloaded first), as a transformers model."""
    transformers = require_transformers()
    folder = Path(name) if Path(name).is_dir() else download(name, **download_options)
    return transformers.AutoModel.from_pretrained(str(folder))


class SSLDetector(nn.Module):
    """Frozen SSL encoder + weighted layer sum + mean pooling + projection + `ai`/`language`/`multi` heads."""

    def __init__(self, cfg: SSLConfig, encoder: nn.Module):
        super().__init__()
        self.cfg = cfg
        self.encoder = encoder
        hidden = int(encoder.config.hidden_size)
        layers = int(encoder.config.num_hidden_layers) + 1  # the CNN/embedding output counts as layer 0
        if cfg.frozen:
            self.encoder.requires_grad_(False)
        self.layer_weights = nn.Parameter(torch.zeros(layers))
        self.project = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, cfg.projection), nn.GELU())
        self.dropout = nn.Dropout(cfg.dropout)
        self.heads = nn.ModuleDict({"ai": nn.Linear(cfg.projection, 1),
                                    "language": nn.Linear(cfg.projection, cfg.n_languages),
                                    "multi": nn.Linear(cfg.projection, 1)})

    @classmethod
    def from_pretrained(cls, cfg: SSLConfig | None = None, **download_options: Any) -> SSLDetector:
        """Build around the pretrained encoder `cfg.model_name` (hub id or local folder); the head is new."""
        cfg = cfg or SSLConfig()
        return cls(cfg, load_encoder(cfg.model_name, revision=cfg.revision, **download_options))

    def train(self, mode: bool = True) -> SSLDetector:
        """Train the head; a frozen encoder stays in eval mode (no dropout, fixed statistics)."""
        super().train(mode)
        if self.cfg.frozen:
            self.encoder.eval()
        return self

    def backbone_modules(self) -> list[nn.Module]:
        """The shared feature extractor (everything but the heads)."""
        return [self.encoder, self.project]

    def layer_mix(self) -> torch.Tensor:
        """The learnt weight of each hidden layer (sums to 1)."""
        return torch.softmax(self.layer_weights, dim=0)

    def embed(self, waves: torch.Tensor) -> torch.Tensor:
        """Embedding [B, projection] of 16 kHz waves [B, T] (each normalised to zero mean, unit variance)."""
        if waves.dim() != 2:
            raise ValueError(f"SSLDetector takes waves [batch, samples] at 16 kHz, got shape {tuple(waves.shape)}")
        x = waves.float()
        x = (x - x.mean(dim=1, keepdim=True)) / torch.sqrt(x.var(dim=1, keepdim=True, unbiased=False) + 1e-7)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.cfg.frozen):
            hidden = self.encoder(input_values=x, output_hidden_states=True).hidden_states
        mixed = torch.einsum("l,lbth->bth", self.layer_mix(), torch.stack(hidden))
        return self.project(mixed.mean(dim=1))

    def forward(self, waves: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits: `ai` [B] (higher = more AI), `language` [B, n_languages], `multi` [B]."""
        z = self.dropout(self.embed(waves))
        return {"ai": self.heads["ai"](z).squeeze(-1), "language": self.heads["language"](z),
                "multi": self.heads["multi"](z).squeeze(-1)}
