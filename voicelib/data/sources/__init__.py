"""Data sources: one module per human corpus or AI speech engine (`collect(...)` -> manifest rows).

Offline engines also have `plan(...)`; `engines.py` is the registry of every engine, `synth.py` renders planned
clips in worker processes. `voicelib.data.collect` gathers a language from them.
"""
