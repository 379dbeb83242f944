"""Response shapes of the detection service: voice-ai-detection's, fAIk-Backend's, model info, the explanation."""
from __future__ import annotations

from typing import Any

from voicelib.scoring.decisions import AI, classify


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


def voice_detection_response(result: dict, language: str) -> dict:
    """voice-ai-detection's response shape."""
    return {"status": "success", "language": language.title(), "classification": result["classification"],
            "aiScore": result["aiScore"], "confidenceScore": result["confidence"],
            "languageDistribution": result["languageDistribution"], "multiSpeakerScore": result["multiSpeakerScore"],
            "familyDistribution": result["familyDistribution"], "explanation": explain(result)}


def analyze_response(result: dict, loaded: Any) -> dict:
    """fAIk-Backend's response shape, with the detector's summary under `summary`."""

    threshold, chunks = result["threshold"], []
    for i, c in enumerate(result["chunks"]):
        score = c.get("score")
        if score is None:
            chunks.append({"chunk_index": i, "start_time": c["start"], "end_time": c["end"], "is_ai_generated": False,
                           "confidence": 0.0, "class_probabilities": {}, "skipped": "silent"})
            continue
        chunks.append({"chunk_index": i, "start_time": c["start"], "end_time": c["end"],
                       "is_ai_generated": score >= threshold,
                       "confidence": round(classify(score, threshold, band=0)[1], 6),
                       "class_probabilities": {"fake": score, "real": round(1.0 - score, 6)}})
    scores = [c["score"] for c in result["chunks"] if c.get("score") is not None]
    n_ai = sum(s >= threshold for s in scores)
    summary = {"classification": result["classification"], "ai_score": result["aiScore"], "threshold": threshold,
               "ai_chunks": n_ai, "human_chunks": len(scores) - n_ai, "skipped_chunks": result["skippedChunks"],
               "ai_chunk_ratio": round(n_ai / len(scores), 6), "mean_chunk_score": round(sum(scores) / len(scores), 6),
               "max_chunk_score": max(scores), "duration": result["duration"], "language": loaded.language,
               "model_version": loaded.version, "language_distribution": result["languageDistribution"],
               "multi_speaker_score": result["multiSpeakerScore"], "family_distribution": result["familyDistribution"],
               "explanation": explain(result)}
    return {"is_deepfake": result["classification"] == AI, "overall_confidence": result["confidence"],
            "model_loaded": True, "total_chunks": len(chunks), "chunks": chunks, "summary": summary}


def model_info(loaded: Any) -> dict:
    """What one loaded model is: version, labels, threshold, training data and test metrics from its directory."""
    det, meta = loaded.detector, loaded.detector.meta
    metrics = meta.get("metrics") or {}
    return {"version": loaded.version, "loaded_at": loaded.loaded_at, "labels": meta.get("labels", ["human", "ai"]),
            "class_mapping": {"0": "HUMAN", "1": "AI_GENERATED"}, "positive_label": meta.get("positive_label", "ai"),
            "threshold": round(det.threshold, 6), "inconclusive_band": det.band, "sample_rate": det.sample_rate,
            "segment_seconds": meta.get("segment_seconds"), "language_head": det.languages,
            "language_head_active": bool(meta.get("language_head_active", True)), "backend": det.backend,
            "created": meta.get("created"), "training_data": meta.get("data"),
            "final_fit": meta.get("final_fit"),  # trained on every clip: where its threshold came from
            "validation_metrics": {k: v for k, v in metrics.items() if k != "test"} or None,
            "test_metrics": metrics.get("test")}
