"""The self-contained index.html: every section of the report on one page, built only from the run's files."""
from __future__ import annotations

import logging
import os
from functools import partial
from pathlib import Path

from voicelib.errors import VoiceLibError
from voicelib.files import RunDir, atomic_write
from voicelib.report.card import environment_section, header, model_card
from voicelib.report.html import (
    CSS,
    esc,
)
from voicelib.report.sections import augment_section, data_section, evaluation_section, read_run_file, training_section

log = logging.getLogger(__name__)


class ReportError(VoiceLibError):
    """One or more report sections could not be built (the page is written, naming them)."""


def stage_title(stage: str) -> str:
    """`03_finetune` -> `Finetune`: a stage's name as a link text."""
    return stage[3:].replace("_", " ").capitalize() if stage[:2].isdigit() else stage


SECTIONS = [("data", "Data", data_section), ("augmentation", "Augmentation", partial(augment_section, per_class=2)),
            ("training", "Training", training_section), ("evaluation", "Evaluation", evaluation_section),
            ("model-card", "Model card", model_card), ("environment", "Environment", environment_section)]


def write_index(run_dir: str | os.PathLike) -> Path:
    """Write run_dir/index.html: one self-contained page (inline CSS, base64 images and audio, no CDN)."""
    run_dir = Path(run_dir).resolve()
    seed = int(read_run_file(RunDir(run_dir).params).get("parameters", {}).get("seed", 0) or 0)
    stages = read_run_file(RunDir(run_dir).stages).get("stages", {})
    links = " ".join(f'<a href="{s}.html">{esc(stage_title(s))}</a>' for s in stages)
    nav = "".join(f'<a href="#{a}">{t}</a>' for a, t, _ in SECTIONS)
    body = [header(run_dir), f"<nav>{nav}<br><span class='muted'>notebooks:</span> {links}</nav>"]
    failed = []
    for anchor, title, build in SECTIONS:
        try:
            content = build(run_dir, seed=seed) if build is data_section else build(run_dir)
        except Exception as exc:  # noqa: BLE001 - shown on the page and raised below: the rest still renders
            log.exception("report section %s failed", anchor)
            failed.append(f"{title} ({type(exc).__name__}: {exc})")
            content = f'<p class="fail">This section could not be built: {esc(type(exc).__name__)}: {esc(exc)}</p>'
        body.append(f'<section id="{anchor}"><h2>{esc(title)}</h2>{content}</section>')
    page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>voicelib report {esc(run_dir.name)}'
            f'</title><style>{CSS}</style></head><body><main>{"".join(body)}</main></body></html>\n')
    with atomic_write(RunDir(run_dir).index, "w", encoding="utf-8") as handle:
        handle.write(page)
    if failed:
        raise ReportError(f"{RunDir(run_dir).index}: written, but {len(failed)} section(s) failed: "
                          f"{'; '.join(failed)}")
    return RunDir(run_dir).index
