"""Small named checks that end each stage notebook (ploomber-style): each raises CheckFailed saying what is wrong.

A check returns a short value worth showing (counts, names) so the notebook's last cells read as evidence.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from voicelib.data import manifest, splits
from voicelib.errors import VoiceLibError
from voicelib.files import RunDir, read_json
from voicelib.model.saving import MODEL_FILES, read_meta


class CheckFailed(VoiceLibError):
    """A stage's output does not hold what the next stages need."""


def both_classes_present(df: pd.DataFrame) -> list[str]:
    """The manifest holds human and AI clips."""
    labels = sorted(set(df["label"]))
    if labels != ["ai", "human"]:
        raise CheckFailed(f"need human and AI clips, have {labels or 'none'}; collect the missing class")
    return labels


def every_split_has_both_classes(df: pd.DataFrame) -> dict[str, int]:
    """Train, val and test each hold clips of both classes; returns clips per split."""
    active = df[df["split"].isin(["train", "val", "test"])]
    classes = active.groupby("split")["label"].nunique().reindex(["train", "val", "test"]).fillna(0)
    lacking = [s for s, n in classes.items() if n < 2]
    if lacking:
        raise CheckFailed(f"split(s) {', '.join(lacking)} lack a class; collect more speakers of the missing class")
    return active["split"].value_counts().to_dict()


def no_leakage(path: str | os.PathLike) -> str:
    """The manifest written to disk has no speaker, group or sentence in two splits."""

    splits.check_leakage(manifest.read_manifest(path))
    return "no speaker, group or sentence in two splits"


def files_written(*paths: str | os.PathLike) -> list[str]:
    """Each file exists and is not empty; returns their names."""
    missing = [str(p) for p in map(Path, paths) if not p.is_file() or p.stat().st_size == 0]
    if missing:
        raise CheckFailed(f"missing or empty {', '.join(missing)}; rerun this stage")
    return [Path(p).name for p in paths]


def examples_cover_both_classes(examples: pd.DataFrame, df: pd.DataFrame) -> list[str]:
    """The augmentation examples include every class of the manifest."""
    missing = sorted(set(df["label"]) - set(examples["label"]))
    if missing:
        raise CheckFailed(f"augmentation examples lack class(es) {missing}; raise augment_examples")
    return sorted(set(examples["label"]))


def config_round_trips(config: Any, stored: dict[str, Any]) -> str:
    """A config rebuilt from what was written equals the one in use."""
    again = type(config).from_dict(stored)
    if again != config:
        raise CheckFailed(f"{type(config).__name__} written to disk differs from the one in use: {again} != {config}")
    return "round trip ok"


def losses_finite(history: pd.DataFrame) -> float:
    """Every epoch's training loss is a finite number; returns the last one."""
    bad = history[~history["train_loss"].map(lambda v: isinstance(v, float) and math.isfinite(v))]
    if len(bad):
        raise CheckFailed(f"training loss is not finite at epoch(s) {list(bad['epoch'])}; lower training.lr")
    return float(history["train_loss"].iloc[-1])


def model_dir_complete(model_dir: str | os.PathLike) -> list[str]:
    """The model directory holds its weights, config, metrics and history."""
    return files_written(*(Path(model_dir) / name for name in MODEL_FILES))


def model_has_operating_point(model_dir: str | os.PathLike) -> float:
    """The model carries a threshold and a calibration fitted on validation; returns the threshold."""
    meta = read_meta(model_dir)
    if meta.get("threshold") is None or not isinstance(meta.get("calibration"), dict):
        raise CheckFailed("the model has no validation threshold or calibration; training did not finish")
    return float(meta["threshold"])


def final_model_consistent(run: RunDir) -> str:
    """final.json names the shipped model; a final model carries the held-out operating point and loads."""
    final = read_json(run.final_summary)
    if not final.get("enabled"):
        return final.get("note", "no final fit")
    meta = read_meta(final["store_entry"])
    point = final["operating_point"]
    if meta.get("threshold") != point["threshold"] or meta.get("calibration") != point["calibration"]:
        raise CheckFailed(f"{final['store_entry']}: its threshold/calibration differ from the held-out operating "
                          "point in final.json; rerun the final-fit stage")
    return f"{Path(final['store_entry']).name}: trained on {final['n_clips']} clips, threshold {point['threshold']:.3f}"


def scores_cover_both_classes(path: str | os.PathLike) -> dict[str, int]:
    """scores.csv holds scored human and AI test clips; returns clips per class."""
    scores = pd.read_csv(path)
    counts = scores["label"].value_counts().to_dict()
    if set(counts) != {"human", "ai"}:
        raise CheckFailed(f"{path}: test scores need both classes, have {counts}")
    return counts


def report_self_contained(index: str | os.PathLike) -> int:
    """index.html embeds its figures and loads nothing from the network; returns its size in kB."""
    page = Path(index).read_text(encoding="utf-8")
    if "data:image/png;base64," not in page:
        raise CheckFailed(f"{index}: the report embeds no figure")
    if 'src="http' in page or "href=\"http" in page.split("<body", 1)[0]:
        raise CheckFailed(f"{index}: the report loads something from the network")
    return len(page) // 1024
