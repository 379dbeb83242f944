"""Fixed-length training and validation segments over a manifest, with class balancing and mixtures.

Targets per segment: `ai` (1 = AI, 0 = human), `ai_mask`, `language` (index into LANGUAGE_NAMES, -1 when
the language head is masked), `multi` (1 for an on-the-fly two-speaker mixture, else 0) and `family`
(index into the model's families for AI clips, -1 for human clips, unknown families and mixtures).

Mixtures take the partner clip from the *same class* and a different speaker whenever the split has one,
so the AI label stays unambiguous and "two voices" carries no information about the class (both classes
get mixtures at the same rate). Only when the class has a single speaker is the partner taken from the
other class; such a mixture's AI loss is masked (`ai_mask` = 0) rather than given an arbitrary label.

Randomness per item comes from (seed, epoch, index), so a run is reproducible whatever the number of
DataLoader workers, and a resumed run sees the same data as an uninterrupted one.
"""
from __future__ import annotations

import logging
import random
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, WeightedRandomSampler

from voicelib.audio.augment import Augmenter, _fit_length, random_crop
from voicelib.audio.cache import AudioCache
from voicelib.data.manifest import family_of
from voicelib.data.manifest import summary as table
from voicelib.errors import DataError
from voicelib.languages import LANGUAGE_NAMES

logger = logging.getLogger(__name__)

LABELS = {"human": 0, "ai": 1}
STRETCH_MARGIN = 1.2  # crop this much more than a segment so time-stretch can fill it without tiling


def seed_worker(worker_id: int) -> None:
    """Seed numpy and random in a DataLoader worker from torch's per-worker seed (as clovaai/aasist)."""
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def label_array(frame: pd.DataFrame) -> np.ndarray:
    """Labels as 0 (human) / 1 (ai), refusing anything else."""
    bad = sorted(set(frame["label"]) - set(LABELS))
    if bad:
        raise DataError(f"manifest: unknown label values {bad}; labels must be 'human' or 'ai'")
    return frame["label"].map(LABELS).to_numpy(dtype=np.int64)


def family_indices(frame: pd.DataFrame, families: Sequence[str] | None) -> np.ndarray:
    """Family-head targets: index into `families` for AI clips, -1 for humans, unknown families or no head."""
    if not families:
        return np.full(len(frame), -1, dtype=np.int64)

    lookup = {name: i for i, name in enumerate(families)}
    index = family_of(frame).map(lambda f: lookup.get(f, -1)).to_numpy(dtype=np.int64)
    return np.where(frame["label"].to_numpy() == "ai", index, -1)


def language_indices(frame: pd.DataFrame, *, active: bool) -> np.ndarray:
    """Language-head targets: index into LANGUAGE_NAMES, or -1 everywhere when the head is masked."""
    if not active:
        return np.full(len(frame), -1, dtype=np.int64)
    lookup = {name: i for i, name in enumerate(LANGUAGE_NAMES)}
    return frame["language"].map(lambda x: lookup.get(str(x).lower(), -1)).to_numpy(dtype=np.int64)


class SegmentDataset(Dataset):
    """Segments of `segment_seconds` from the clips of a manifest, read through an AudioCache."""

    def __init__(self, frame: pd.DataFrame, cache: AudioCache, *, segment_seconds: float = 3.0, train: bool = True,
                 augmenter: Augmenter | None = None, mix_prob: float = 0.0, language_head: bool = False,
                 seed: int = 0, max_crops: int = 4, families: Sequence[str] | None = None):
        self.frame = frame.reset_index(drop=True)
        self.cache = cache
        self.sr = cache.sr
        self.length = int(round(segment_seconds * self.sr))
        self.train = train
        self.augmenter = augmenter
        self.mix_prob = mix_prob if train else 0.0
        self.seed = int(seed)
        self.epoch = 0
        self.labels = label_array(self.frame)
        self.languages = language_indices(self.frame, active=language_head)
        self.families = family_indices(self.frame, families)
        self.speakers = self.frame["speaker"].astype(str).to_numpy()
        self.items = list(range(len(self.frame))) if train else self._val_items(max_crops)

    def _val_items(self, max_crops: int) -> list[tuple[int, float]]:
        """Deterministic evenly spaced crops per clip: (clip index, start as a fraction of the free span)."""
        items = []
        for i, duration in enumerate(self.frame["duration"].astype(float)):
            n = int(min(max(np.ceil(duration * self.sr / self.length), 1), max_crops))
            items += [(i, (k + 0.5) / n if n > 1 else 0.5) for k in range(n)]
        return items

    def set_epoch(self, epoch: int) -> None:
        """Make the random crops, augmentations and mixtures of this epoch differ from the last."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.items)

    def wave(self, i: int) -> np.ndarray:
        """The whole decoded clip `i`."""
        row = self.frame.iloc[i]
        return self.cache.get(row["path"], row.get("hash"))

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not self.train:
            i, frac = self.items[index]
            wave = np.asarray(self.wave(i), dtype=np.float32)
            start = int(frac * max(len(wave) - self.length, 0))
            segment = _fit_length(wave[start:start + self.length], self.length)
            return self._item(segment, i, ai_mask=1.0, multi=0.0)
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        segment = self._train_segment(index, rng)
        ai_mask, multi = 1.0, 0.0
        if self.mix_prob > 0 and rng.random() < self.mix_prob:
            partner, same_class = self._partner(index, rng)
            if partner is not None:
                segment = self._mix(segment, self._train_segment(partner, rng), rng)
                ai_mask, multi = (1.0 if same_class else 0.0), 1.0
        return self._item(segment, index, ai_mask=ai_mask, multi=multi)

    def _item(self, segment: np.ndarray, i: int, *, ai_mask: float, multi: float) -> dict[str, Any]:
        return {"wave": torch.from_numpy(np.array(segment, dtype=np.float32)),  # a copy: memmaps are read-only
                "ai": torch.tensor(float(self.labels[i])), "ai_mask": torch.tensor(ai_mask),
                "language": torch.tensor(int(self.languages[i])), "multi": torch.tensor(multi),
                "family": torch.tensor(int(self.families[i]) if not multi else -1), "clip": torch.tensor(i)}

    def _train_segment(self, i: int, rng: np.random.Generator) -> np.ndarray:
        """A random crop of clip `i`, augmented (wave level) and cut to the segment length."""
        wave = self.wave(i)
        margin = STRETCH_MARGIN if self.augmenter is not None else 1.0
        window = random_crop(wave, self.sr, rng, seconds=min(margin * self.length, len(wave)) / self.sr)
        if self.augmenter is not None:
            window = self.augmenter(window, self.sr, rng)
        return random_crop(window, self.sr, rng, seconds=self.length / self.sr)

    def _partner(self, i: int, rng: np.random.Generator) -> tuple[int | None, bool]:
        """Another clip by a different speaker, from the same class when possible."""
        other_speaker = self.speakers != self.speakers[i]
        same = np.flatnonzero(other_speaker & (self.labels == self.labels[i]))
        if len(same):
            return int(rng.choice(same)), True
        anyone = np.flatnonzero(other_speaker)
        return (int(rng.choice(anyone)), False) if len(anyone) else (None, False)

    def _mix(self, a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Overlap the two (B at -6..+6 dB relative to A) or concatenate them at a random point."""
        rms_a = np.sqrt(np.mean(a.astype(np.float64) ** 2)) + 1e-8
        rms_b = np.sqrt(np.mean(b.astype(np.float64) ** 2)) + 1e-8
        b = b * np.float32(rms_a / rms_b * 10 ** (rng.uniform(-6, 6) / 20))
        if rng.random() < 0.5:
            mixed = a + b
            peak = float(np.max(np.abs(mixed)))
            return (mixed / max(peak / 0.99, 1.0)).astype(np.float32)
        cut = int(rng.uniform(0.3, 0.7) * len(a))
        return np.concatenate([a[:cut], b[cut:]]).astype(np.float32)


def balanced_sampler(labels: np.ndarray, *, num_samples: int, seed: int) -> WeightedRandomSampler:
    """Draw both classes equally often (with replacement), reproducibly under `seed`."""
    counts = np.bincount(labels, minlength=2).astype(np.float64)
    weights = 1.0 / counts[labels]
    generator = torch.Generator().manual_seed(int(seed))
    return WeightedRandomSampler(torch.as_tensor(weights, dtype=torch.double), num_samples, replacement=True,
                                 generator=generator)


def segments_per_epoch(frame: pd.DataFrame, segment_seconds: float) -> int:
    """One segment per `segment_seconds` of training audio (at least one per clip)."""
    return int(np.maximum(np.ceil(frame["duration"].astype(float) / segment_seconds), 1).sum())


def data_summary(train: pd.DataFrame, val: pd.DataFrame) -> dict[str, Any]:
    """Clips, minutes, speakers and languages per split and label (stored with the model)."""

    summary: dict[str, Any] = {}
    for split, frame in (("train", train), ("val", val)):
        for row in table(frame, by=["label"]).to_dict("records"):
            part = frame[frame["label"] == row["label"]]
            summary[f"{split}_{row['label']}"] = {"clips": int(row["clips"]), "minutes": float(row["minutes"]),
                                                  "speakers": int(row["speakers"]),
                                                  "languages": sorted(part["language"].astype(str).unique().tolist())}
    return summary
