"""Evaluation: metrics over held-out scores, baselines, robustness, unseen engines and leave-one-family-out."""
