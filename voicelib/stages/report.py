"""Stage 06, report: the run's index.html, built only from the files the other stages wrote."""
from __future__ import annotations

from pathlib import Path

from voicelib.files import RunDir
from voicelib.report import card, page


def write(run: RunDir) -> Path:
    """Write run/index.html (self-contained); ReportError names any section that failed."""
    return page.write_index(run.root)


def model_card(run: RunDir) -> str:
    """The model card as HTML."""
    return card.model_card(run.root)


def environment(run: RunDir) -> str:
    """Versions, seed, device and each stage's status as HTML."""
    return card.environment_section(run.root)
