"""Models: architecture configs and registry, layers, ResNet and LCNN, the model directory, store, export, LFCC-GMM.

A model directory holds `model.safetensors` (weights), `config.json` (everything to rebuild and use the model:
architecture, feature settings, labels, sample rate, threshold, calibration, training config, seed, data summary,
versions), `metrics.json` and `history.csv`. Loading reads only safetensors and JSON, so it never executes code
from the files; `store` is the versioned registry of such directories.
"""
