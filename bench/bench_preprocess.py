"""Benchmark `preprocess.prepare` speed and check it takes away the silence/level/zero shortcuts.

For each language with human data in ../shared/speech: a ShortcutProbe scored out of fold under speaker-disjoint
cross-validation (StratifiedGroupKFold by speaker, one fold per AI speaker up to 5: the AI side has only 2-15
speakers, so one fixed assign_splits test split holds 1 AI clip in Hindi), on raw waves and on prepared waves;
speed is prepare's multiple of real time (silero and energy VAD), one thread.
Writes bench/results/preprocess.json.

    .venv/bin/python bench/bench_preprocess.py [--languages hindi english] [--threads 1]
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_eval_real import SHARED, shared_manifest  # noqa: E402
from machine import machine  # noqa: E402

from voicelib.audio import (  # noqa: E402
    decode,
    preprocess,  # noqa: E402
)
from voicelib.evaluation.baselines import SHORTCUT_FEATURES, ShortcutProbe, shortcut_matrix  # noqa: E402
from voicelib.files import write_json  # noqa: E402
from voicelib.metrics import eer  # noqa: E402

log = logging.getLogger("bench_preprocess")
SR = 16000
TARGETED = ["leading_silence_s", "trailing_silence_s", "zero_fraction", "longest_zero_run_s", "rms_dbfs"]


def probe_eer(x: np.ndarray, labels: np.ndarray, speakers: np.ndarray, names: list[str]) -> dict:
    """Out-of-fold shortcut-probe EER under speaker-disjoint folds, and the strongest cues of a full fit."""
    from sklearn.model_selection import StratifiedGroupKFold

    k = int(min(5, len(set(speakers[labels == 1]))))
    scores = np.zeros(len(labels))
    for train, test in StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=0).split(x, labels, speakers):
        scores[test] = ShortcutProbe(seed=0).fit(x[train], labels[train]).score(x[test])
    coef = ShortcutProbe(seed=0).fit(x, labels).pipeline[-1].coef_.ravel()
    strongest = {names[i]: round(float(coef[i]), 3) for i in np.argsort(-np.abs(coef))[:3]}
    rate = float(eer(labels, scores)[0])
    # above 0.5: what the probe learnt on some speakers points the wrong way on others (no transferable cue);
    # min(eer, 1 - eer) is the most a probe told the sign in hindsight could reach
    return {"eer": round(rate, 4), "eer_best_sign": round(min(rate, 1 - rate), 4), "folds": k, "strongest": strongest}


def timed_prepare(waves: list[np.ndarray], cfg: preprocess.PreprocessConfig) -> tuple[list[np.ndarray], float]:
    """Prepared waves and the multiple of real time."""
    preprocess.prepare(waves[0], SR, cfg)  # create the ONNX session outside the timing
    start = time.perf_counter()
    out = [preprocess.prepare(w, SR, cfg) for w in waves]
    elapsed = time.perf_counter() - start
    return out, sum(len(w) for w in waves) / SR / elapsed


def language_result(language: str, variants: dict[str, preprocess.PreprocessConfig]) -> dict:
    """Probe EERs raw vs prepared (default config and variants) and prepare speed on one language."""
    df = shared_manifest(language)
    waves = [decode.load(p, sr=SR) for p in df["path"]]
    labels = (df["label"] == "ai").to_numpy(dtype=int)
    speakers = (df["label"] + ":" + df["speaker"]).to_numpy()
    prepared, speed = timed_prepare(waves, preprocess.PreprocessConfig())
    _, speed_energy = timed_prepare(waves, preprocess.PreprocessConfig(vad_backend="energy"))
    cols = [SHORTCUT_FEATURES.index(c) for c in TARGETED]
    result = {"clips": {lab: int((df["label"] == lab).sum()) for lab in ("human", "ai")},
              "speakers": {lab: int(df.loc[df["label"] == lab, "speaker"].nunique()) for lab in ("human", "ai")},
              "audio_minutes": round(sum(len(w) for w in waves) / SR / 60, 2),
              "prepared_minutes": round(sum(len(w) for w in prepared) / SR / 60, 2),
              "speed_x_realtime_silero": round(speed, 1), "speed_x_realtime_energy": round(speed_energy, 1)}
    batches = [("raw", waves), ("prepared", prepared)]
    batches += [(f"prepared_{name}", [preprocess.prepare(w, SR, cfg) for w in waves]) for name, cfg in variants.items()]
    for name, batch in batches:
        x = shortcut_matrix(batch, SR)
        result[f"probe_all_cues_{name}"] = probe_eer(x, labels, speakers, SHORTCUT_FEATURES)
        result[f"probe_targeted_cues_{name}"] = probe_eer(x[:, cols], labels, speakers, TARGETED)
        result[f"median_cues_{name}"] = {lab: {c: round(float(np.median(x[labels == k, SHORTCUT_FEATURES.index(c)])), 4)
                                               for c in TARGETED + ["duration_s"]}
                                         for k, lab in enumerate(("human", "ai"))}
    log.info("%s: %s", language, result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--languages", nargs="+", default=["hindi", "english", "malayalam", "telugu"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "preprocess.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    if not (SHARED / "manifest.csv").is_file():
        raise SystemExit(f"no shared speech corpus at {SHARED}; set VOICELIB_SHARED_SPEECH")
    variants = {"no_edge_refinement": preprocess.PreprocessConfig(edge_top_db=None),
                "edge_pad_0": preprocess.PreprocessConfig(edge_pad_seconds=0.0)}
    results = {lang: language_result(lang, variants) for lang in args.languages}
    write_json(args.out, {"machine": machine(), "config": preprocess.PreprocessConfig().to_dict(),
                          "variants": {k: v.to_dict() for k, v in variants.items()},
                          "probe": "ShortcutProbe (logistic regression), out-of-fold EER, speaker-disjoint folds "
                                   "(0.5 = chance)",
                          "targeted_cues": TARGETED, "languages": results})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
