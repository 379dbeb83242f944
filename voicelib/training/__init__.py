"""Training: fit (the epoch loop, validation, calibration), losses, checkpoints and DDP."""
