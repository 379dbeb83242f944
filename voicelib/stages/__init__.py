"""The pipeline stages: one module per notebook, the run-directory contract, the runner, parameters and checks."""
