"""Scoring: what detection needs and no more -- windows, decisions, the detector, streaming, fused models."""
