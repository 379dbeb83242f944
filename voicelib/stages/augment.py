"""Stage 02, augment: the augmentation settings every training of the run uses, with before/after examples."""
from __future__ import annotations

from typing import Any

import pandas as pd

from voicelib.audio import augment, decode
from voicelib.audio.augment import AugmentConfig
from voicelib.config import SAMPLE_RATE
from voicelib.data.manifest import read_manifest
from voicelib.files import RunDir, read_json, write_json


def settings(augmentation: dict[str, Any]) -> AugmentConfig:
    """The run's AugmentConfig: the defaults with the `augmentation` parameter's changes (checked)."""
    return AugmentConfig.from_dict(augmentation)


def load_split(run: RunDir) -> pd.DataFrame:
    """The manifest stage 01 wrote."""
    return read_manifest(run.manifest)


def stored_config(run: RunDir) -> dict[str, Any]:
    """The settings as written to augment.json (for the round-trip check)."""
    return read_json(run.augment_config)["config"]


def examples(manifest: pd.DataFrame, run: RunDir, *, config: AugmentConfig | None = None, n: int = 4,
             seed: int = 0, sr: int = SAMPLE_RATE, seconds: float = 4.0) -> pd.DataFrame:
    """Write before/after WAV pairs for `n` training clips per class and the settings; return what was applied."""
    aug = augment.Augmenter(config)
    pool = manifest[manifest["split"] == "train"] if "split" in manifest else manifest
    rows, kinds = [], {**augment.TRANSFORMS, **augment.CHANNEL_TRANSFORMS}
    for label, group in pool.groupby("label", sort=True):
        for i, row in enumerate(group.sample(n=min(n, len(group)), random_state=seed).itertuples()):
            rng = augment.clip_rng(seed, row.hash, 0)
            wave = augment.random_crop(decode.load(row.path, sr=sr), sr, rng, seconds=min(seconds, row.duration))
            after, applied = aug.apply(wave, sr, rng)
            while not applied and any(getattr(aug.config, f"p_{k}") > 0 for k in kinds):
                after, applied = aug.apply(wave, sr, rng)  # an example that shows nothing is useless
            before_path = decode.save(run.augment_examples / f"{label}_{i}_before.wav", wave, sr)
            after_path = decode.save(run.augment_examples / f"{label}_{i}_after.wav", after, sr)
            rows.append({"label": label, "source_path": row.path, "before": str(before_path),
                         "after": str(after_path), "transforms": ",".join(applied)})
    table = pd.DataFrame(rows)
    write_json(run.augment_config, {"config": aug.config.to_dict(), "seed": seed,
                                     "examples": table.to_dict(orient="records")})
    return table
