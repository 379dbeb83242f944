"""The model card, the environment and the headline cards: what the model is, what it was and was not measured on."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from voicelib.evaluation.baselines import NAMES
from voicelib.files import RunDir
from voicelib.model.saving import CONFIG
from voicelib.report.html import (
    esc,
    fmt,
    table_html,
)
from voicelib.report.sections import read_run_file


def model_card(run_dir: Path) -> str:
    """Intended use, data, performance, limitations and what was not tested, from the run's files."""
    params = read_run_file(RunDir(run_dir).params).get("parameters", {})
    language = params.get("language", "?")
    data = read_run_file(RunDir(run_dir).data_summary)
    metrics = read_run_file(RunDir(run_dir).metrics)
    engines = [r["engine"] for r in data.get("tables", {}).get("engine", []) if r.get("label") == "ai"]
    speakers = {r["label"]: 0 for r in data.get("tables", {}).get("speaker", [])}
    for r in data.get("tables", {}).get("speaker", []):
        speakers[r["label"]] += 1
    limits = [f"{data.get('clips', '?')} clips ({data.get('minutes', '?')} min) over train, validation and test: "
              f"{', '.join(f'{k} {v}' for k, v in data.get('classes', {}).items())}; speakers per class: "
              f"{', '.join(f'{k} {v}' for k, v in speakers.items())}."]
    if len(engines) <= 1:
        limits.append(f"Only one AI engine ({', '.join(engines) or 'none'}): the model may have learnt that engine, "
                      "not AI speech in general.")
    if min(speakers.values(), default=0) < 10:
        limits.append("Fewer than 10 speakers/voices in a class: scores may reflect speakers, not synthesis.")
    by_split = data.get("ai_engines_by_split", {})
    unseen = sorted(set(by_split.get("train", [])) - set(by_split.get("test", [])))
    if by_split:
        limits.append(f"AI engines in the test split: {', '.join(by_split.get('test', [])) or 'none'}"
                      + (f"; {', '.join(unseen)} only in training, so not tested." if unseen else "."))
    if metrics.get("shortcut_warning"):
        limits.append(str(metrics["shortcut_warning"]))
    elif metrics and not metrics.get("baselines"):
        limits.append("The shortcut probe and the LFCC-GMM baseline were not run (baselines=False): nothing here "
                      "rules out that trivial cues (level, silence, bandwidth) explain the scores.")
    limits += [f"Collection: {n}" for n in data.get("notes", [])]
    epochs = read_run_file(RunDir(run_dir).model / CONFIG).get("train_config", {}).get("epochs")
    if epochs is not None and int(epochs) <= 1:
        limits.append("One training epoch (smoke run?): this model is a pipeline check, not a usable detector.")
    eer, auc = metrics.get("eer"), metrics.get("roc_auc")
    perf = (f"Test EER {fmt(eer)}, ROC-AUC {fmt(auc)} on the held-out test split (speakers and groups unseen "
            "in training; threshold chosen on validation)." if eer is not None else "Not evaluated.")
    final = read_run_file(RunDir(run_dir).final_summary)
    if final.get("enabled"):
        perf += (f" These figures are the evaluated model's. The shipped model ({final.get('store_entry')}) was "
                 f"trained on all {final['n_clips']} clips, test clips included, so no figure of it is held out; its "
                 "threshold and calibration come from the evaluated model's held-out validation and test scores.")
    untested = [f"AI engines other than {', '.join(engines) or 'those above'} (new TTS systems, voice cloning "
                "and voice conversion).", f"Languages other than {language}; code-switched speech.",
                "Long recordings with several speakers, music or strong background noise.",
                "Adversarial attacks (noise or filtering designed to fool the detector)."]
    if not metrics.get("robustness"):
        untested.append("Robustness to noise, codecs and telephone channels (robustness evaluation was off).")
    li = lambda items: "<ul>" + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul>"  # noqa: E731

    which = table_html(which_model_table(run_dir)) if (RunDir(run_dir).train_summary).is_file() else ""
    return (f"<h4>Intended use</h4><p>Flag {esc(language)} speech clips that are likely AI-generated (TTS), as one "
            "signal for a human reviewer. Not for legal or forensic decisions, nor for judging single clips "
            "without a person listening.</p>"
            f"<h4>Data</h4><p>{esc(limits[0])} AI engines: {esc(', '.join(engines) or 'none')}.</p>"
            f"<h4>Performance</h4><p>{esc(perf)}</p><h4>Limitations</h4>{li(limits[1:] or ['none noted'])}"
            f"<h4>Not tested</h4>{li(untested)}<h4>Which model is which</h4>{which}")


def environment_section(run_dir: Path) -> str:
    """Versions, seed, git revision, device and each stage's status and duration, with links."""
    info = read_run_file(RunDir(run_dir).params)
    params, env = info.get("parameters", {}), info.get("environment", {})
    train = read_run_file(RunDir(run_dir).train_summary)
    env = {**env, "seed": params.get("seed"), "device": train.get("device", params.get("device"))}
    stages = read_run_file(RunDir(run_dir).stages).get("stages", {})
    # the report stage is still running while it writes this page
    status = lambda s, v: ("writing this report" if v.get("status") == "running" and s.endswith("_report")  # noqa: E731
                           else v.get("status"))
    rows = [{"stage": f'<a href="{s}.html">{esc(s)}</a>', "status": esc(status(s, v)),
             "duration (s)": v.get("duration_s", ""), "error": esc(v.get("error") or "")} for s, v in stages.items()]
    stage_table = pd.DataFrame(rows).to_html(index=False, escape=False, classes="tbl", border=0) if rows else ""
    return (table_html(pd.DataFrame({"name": list(env), "value": [str(v) for v in env.values()]}))
            + f"<h4>stages</h4>{stage_table}<h4>parameters</h4>"
            + table_html(pd.DataFrame({"name": list(params), "value": [str(v) for v in params.values()]}),
                         max_rows=200))


def _pct(value: Any) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def generalisation_cards(metrics: dict) -> str:
    """The headline: EER on AI engines never heard (large) and on engines heard in training, beside the baselines."""
    cards = []
    for key, title, big in (("unseen_engine_eer", "EER on engines never heard", True),
                            ("seen_engine_eer", "EER on engines heard in training", False)):
        g = metrics.get(key)
        if not isinstance(g, dict):
            continue
        if g.get("eer") is None:
            cards.append(f'<div class="kpi{" big" if big else ""}">{esc(title)}<b>not measurable</b>'
                         f'<small>{esc(g.get("note", ""))}</small></div>')
            continue
        ci = "–".join(_pct(x) for x in g.get("eer_ci", []))
        base = ", ".join(f"{n} {_pct(g.get(f'{n}_eer'))}" for n in NAMES if f"{n}_eer" in g)
        cards.append(f'<div class="kpi{" big" if big else ""}">{esc(title)}<b>{_pct(g["eer"])}</b>'
                     f'<small>95% {ci} · {g["n_ai"]} AI clips ({esc(", ".join(g["families"]))}) vs {g["n_human"]} '
                     f'human · same clips: {esc(base)} · AI called AI {_pct(g.get("ai_called_ai"))}</small></div>')
    return "".join(cards)


def header(run_dir: Path) -> str:
    params = read_run_file(RunDir(run_dir).params)
    metrics = read_run_file(RunDir(run_dir).metrics)
    base = metrics.get("baselines", {})
    pct = lambda v: None if v is None else f"{100 * v:.1f}%"  # noqa: E731
    kpis = [("test EER", pct(metrics.get("eer"))), ("ROC-AUC", metrics.get("roc_auc")),
            ("test clips", metrics.get("n_test")),
            ("LFCC-GMM EER", pct(base.get("lfcc_gmm", {}).get("eer"))),
            ("one-class GMM EER", pct(base.get("gmm_novelty", {}).get("eer"))),
            ("shortcut-probe EER", pct(base.get("shortcut_probe", {}).get("eer")))]
    lofo_result = read_run_file(RunDir(run_dir).lofo)
    lofo_card = ""
    if lofo_result.get("mean_eer") is not None:
        beside = ", ".join(f"{name} {_pct(lofo_result.get(key))}" for name, key in (
            ("LFCC-GMM", "lfcc_gmm_mean_eer"), ("one-class GMM", "gmm_novelty_mean_eer"),
            ("fused", "fused_mean_eer")) if lofo_result.get(key) is not None)
        lofo_card = (f'<div class="kpi">leave-one-family-out EER<b>{_pct(lofo_result["mean_eer"])}</b>'
                     f'<small>mean over {len(lofo_result["folds"])} families '
                     f'({esc(", ".join(lofo_result["families"]))})'
                     f'{" · same folds: " + esc(beside) if beside else ""}</small></div>')
    cards = generalisation_cards(metrics) + lofo_card + "".join(
        f'<div class="kpi">{esc(k)}<b>{fmt(v)}</b></div>' for k, v in kpis if v is not None)
    stages = read_run_file(RunDir(run_dir).stages).get("stages", {})
    failed = [f"{s}: {v.get('error')}" for s, v in stages.items() if v.get("status") == "failed"]
    notes = "".join(f'<p class="fail">{esc(f)}</p>' for f in failed)
    notes += "".join(f'<p class="warn">Collection: {esc(n)}</p>'
                     for n in read_run_file(RunDir(run_dir).data_summary).get("notes", []))
    if metrics.get("shortcut_warning"):
        notes += f'<p class="warn">{esc(metrics["shortcut_warning"])}</p>'
    final = read_run_file(RunDir(run_dir).final_summary)
    if final.get("enabled"):
        notes += (f"<p class='muted'>Shipped model: {esc(Path(final['store_entry']).name)}, refitted on all "
                  f"{final['n_clips']} clips with the threshold from held-out scores; every figure on this page is "
                  "the evaluated model's (see Model card: which model is which).</p>")
    p = params.get("parameters", {})
    return (f"<h1>AI-speech detector: {esc(p.get('language', '?'))}</h1>"
            f"<p class='muted'>run {esc(params.get('run_id', run_dir.name))}"
            f" · started {esc(params.get('created', ''))}"
            f" · git {esc(params.get('environment', {}).get('git_revision', '?'))}</p>"
            f"{notes}<div class='kpis'>{cards}</div>")


def which_model_table(run_dir: str | os.PathLike) -> pd.DataFrame:
    """Which model each figure belongs to: the evaluated one, and the shipped (final) one if there is one."""
    run_dir = Path(run_dir)
    final = read_run_file(RunDir(run_dir).final_summary)
    train_summary = read_run_file(RunDir(run_dir).train_summary)
    rows = [{"model": "evaluated", "store entry": train_summary.get("store_entry"), "trained on": "train split",
             "threshold from": "its validation scores", "figures in this report": "all of them"}]
    if final.get("enabled"):
        epochs = f"{final['epochs']} epoch{'s' if final['epochs'] != 1 else ''}"
        rows.append({"model": "final (shipped)" if final.get("promoted") else "final (not promoted)",
                     "store entry": final.get("store_entry"), "trained on": f"all {final['n_clips']} clips, {epochs}",
                     "threshold from": f"evaluated model's {final['operating_point']['n_clips']} held-out scores",
                     "figures in this report": "none (nothing held out)"})
    return pd.DataFrame(rows)
