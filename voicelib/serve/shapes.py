"""Response shapes of the detection service: voice-ai-detection's, fAIk-Backend's, model info, the explanation.

Both peers' shapes report `centred` probabilities (the model's threshold maps to 0.5); README "Detection server".
"""
from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from voicelib.scoring.decisions import AI, HUMAN


def explain(result: dict) -> str:
    """One sentence that reads the verdict off the per-chunk scores."""
    chunks = [c for c in result["chunks"] if c.get("score") is not None]
    threshold = result["threshold"]
    above = sum(c["score"] >= threshold for c in chunks)
    top = max(chunks, key=lambda c: c["score"])
    verdict = {"AI_GENERATED": "AI-generated", "HUMAN": "human",
               "INCONCLUSIVE": "inconclusive (too close to the threshold to call)"}[result["classification"]]
    skipped = f", {result['skippedChunks']} silent chunks skipped" if result["skippedChunks"] else ""
    return (f"{above} of {len(chunks)} chunks score above the threshold {threshold:.2f}{skipped}, the most AI-like "
            f"stretch being {round(top['start'], 1):g}-{round(top['end'], 1):g} s at {top['score']:.2f}, "
            f"so the clip reads as {verdict}.")


def centred(prob: float, threshold: float) -> float:
    """The calibrated probability re-centred so the model's threshold maps to 0.5 (monotone, 0 -> 0, 1 -> 1).

    Both peers' clients take 0.5 as the boundary; ours is the model's threshold, so their shapes report this.
    """
    if prob < threshold:
        return 0.5 * prob / max(threshold, 1e-9)
    return 0.5 + 0.5 * (prob - threshold) / max(1.0 - threshold, 1e-9)


def _percent(p: float) -> str:
    """p * 100 to one decimal the way JavaScript's toFixed(1) rounds (half up on the exact binary value)."""
    return str(Decimal(p * 100).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def voice_detection_response(result: dict, language: str) -> dict:
    """voice-ai-detection's response: its five keys first (confidenceScore = P(AI) re-centred), then ours."""
    p = centred(result["aiScore"], result["threshold"])
    lean = ", leaning human" if p < 0.5 else ""
    return {"status": "success", "language": language, "classification": AI if p >= 0.5 else HUMAN,
            "confidenceScore": round(p, 6),
            "explanation": f"Deep model estimated an AI probability of {_percent(p)}%{lean}. {explain(result)}",
            "aiScore": result["aiScore"], "threshold": result["threshold"], "verdict": result["classification"],
            "languageDistribution": result["languageDistribution"], "multiSpeakerScore": result["multiSpeakerScore"],
            "familyDistribution": result["familyDistribution"]}


def _faik_chunk(i: int, start: float, end: float, score: float, threshold: float) -> dict:
    p = centred(score, threshold)
    return {"chunk_index": i, "start_time": start, "end_time": end, "is_ai_generated": p >= 0.5,
            "confidence": max(p, 1.0 - p), "class_probabilities": {"ai_generated": p, "real": 1.0 - p},
            "ai_score": score}


def analyze_response(result: dict, loaded: Any, bounds: list[tuple[float, float]], *, chunk_duration: float,
                     overlap: float) -> dict:
    """fAIk-Backend's response (its keys and meanings: class 0 = AI generated), our summary keys after its seven.

    `result` scored exactly the windows `bounds` (seconds, fAIk's layout); a chunk's probabilities are the
    re-centred probability, its confidence the winning class's, and is_deepfake the majority of chunks.
    """
    chunks = [_faik_chunk(i, s, e, c["score"], result["threshold"])
              for i, ((s, e), c) in enumerate(zip(bounds, result["chunks"]))]
    n, n_ai = len(chunks), sum(c["is_ai_generated"] for c in chunks)
    mean_confidence = sum(c["confidence"] for c in chunks) / n
    summary = {"total_chunks": n, "ai_generated_chunks": n_ai, "real_chunks": n - n_ai, "ai_generated_ratio": n_ai / n,
               "average_confidence": mean_confidence, "chunk_duration_seconds": float(chunk_duration),
               "overlap_ratio": float(overlap),
               "classification": result["classification"], "ai_score": result["aiScore"],
               "threshold": result["threshold"], "duration": result["duration"], "language": loaded.language,
               "model_version": loaded.version, "language_distribution": result["languageDistribution"],
               "multi_speaker_score": result["multiSpeakerScore"], "family_distribution": result["familyDistribution"],
               "explanation": explain(result)}
    return {"is_deepfake": n_ai / n > 0.5, "overall_confidence": mean_confidence, "model_loaded": True,
            "total_chunks": n, "chunks": chunks, "summary": summary}


def model_name(loaded: Any) -> str:
    """A loaded model's name as /audio/model-status and /audio/model-info give it."""
    return f"voicelib/{loaded.language}/{loaded.version}"


def faik_model_info(loaded: Any) -> dict:
    """fAIk-Backend's six model-info keys for the default model (class 0 = AI generated, 1 = real)."""
    cfg = loaded.detector.config
    return {"model_name": model_name(loaded), "model_type": cfg.arch, "feature_extractor_type": cfg.features.kind,
            "model_config": json.dumps(cfg.to_dict(), sort_keys=True, default=str), "num_classes": 2,
            "class_mapping": {"0": "AI Generated", "1": "Real"}}


def model_info(loaded: Any) -> dict:
    """What one loaded model is: version, labels, threshold, training data and test metrics from its directory."""
    det, meta = loaded.detector, loaded.detector.meta
    metrics = meta.get("metrics") or {}
    return {"version": loaded.version, "loaded_at": loaded.loaded_at, "labels": meta.get("labels", ["human", "ai"]),
            "label_index": {"0": "HUMAN", "1": "AI_GENERATED"}, "positive_label": meta.get("positive_label", "ai"),
            "threshold": round(det.threshold, 6), "inconclusive_band": det.band, "sample_rate": det.sample_rate,
            "segment_seconds": meta.get("segment_seconds"), "language_head": det.languages,
            "language_head_active": bool(meta.get("language_head_active", True)), "backend": det.backend,
            "created": meta.get("created"), "training_data": meta.get("data"),
            "final_fit": meta.get("final_fit"),  # trained on every clip: where its threshold came from
            "validation_metrics": {k: v for k, v in metrics.items() if k != "test"} or None,
            "test_metrics": metrics.get("test")}
