"""Data: the manifest and its splits, the training dataset, and sources/ (one module per corpus or AI engine)."""
