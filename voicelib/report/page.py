"""Figures, tables and the self-contained index.html built only from the files the stages wrote."""
from __future__ import annotations

import logging
import os
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from voicelib.data.manifest import summary as data_summary_table
from voicelib.errors import VoiceLibError
from voicelib.evaluation.baselines import NAMES
from voicelib.files import atomic_write, read_json, write_json
from voicelib.report import plots
from voicelib.report.html import (
    CLIP_SECONDS,
    CSS,
    SR,
    audio_tag,
    esc,
    figure_png,
    fmt,
    img_tag,
    kv_table,
    load_clip,
    nested_html,
    records_table,
    table_html,
)

log = logging.getLogger(__name__)



class ReportError(VoiceLibError):
    """One or more report sections could not be built (the page is written, naming them)."""


def stage_title(stage: str) -> str:
    """`03_finetune` -> `Finetune`: a stage's name as a link text."""
    return stage[3:].replace("_", " ").capitalize() if stage[:2].isdigit() else stage


def model_features(run_dir: Path | None) -> Any:
    """The FeatureConfig of the run's model (the model's own front end), or the default before training."""
    from voicelib.audio.features import FeatureConfig

    config = _read(run_dir / "model" / "config.json") if run_dir else {}
    return FeatureConfig.from_dict(config["features"]) if config.get("features") else FeatureConfig()


def spectrogram_png(path: str | os.PathLike, *, title: str, features: Any) -> str:
    """Base64 PNG of the first seconds of a clip through the model's front end."""
    return figure_png(plots.spectrogram(load_clip(path, CLIP_SECONDS), features, title=title))


# ---------------------------------------------------------------- data summary


def data_tables(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Clips and minutes per class, engine, speaker and split (class columns side by side)."""
    tables = {}
    for key in ("label", "family", "engine", "speaker", "split"):
        if key not in df.columns:
            continue
        keys = [key] if key == "label" else [key, "label"]
        t = data_summary_table(df, by=keys).drop(columns=["speakers"] if key == "speaker" else [])
        tables[key] = t.sort_values("clips", ascending=False, kind="stable").reset_index(drop=True)
    if "split" in df.columns:
        pivot = df.pivot_table(index="split", columns="label", values="duration", aggfunc=["size", "sum"], fill_value=0)
        pivot.columns = [f"{'clips' if a == 'size' else 'minutes'} {b}" for a, b in pivot.columns]
        for col in [c for c in pivot.columns if c.startswith("minutes")]:
            pivot[col] = (pivot[col] / 60).round(2)
        tables["split_by_class"] = pivot.reset_index()
    return tables


def save_data_summary(df: pd.DataFrame, path: str | os.PathLike, *, quarantined: int = 0,
                      notes: list[str] | None = None) -> dict[str, Any]:
    """Write data_summary.json (totals, AI engines per split, collection notes, data_tables) and return it."""
    ai = df[df["label"] == "ai"]
    engines = {str(k): sorted(map(str, g["engine"].unique())) for k, g in ai.groupby("split")} if "split" in df else {}
    summary = {"clips": int(len(df)), "minutes": round(float(df["duration"].sum()) / 60, 2),
               "notes": list(notes or []), "ai_engines_by_split": engines,
               "speakers": int(df["speaker"].nunique()), "quarantined": int(quarantined),
               "classes": {str(k): int(v) for k, v in df["label"].value_counts().items()},
               "tables": {k: t.to_dict(orient="records") for k, t in data_tables(df).items()}}
    write_json(path, summary)
    return summary


def pick_examples(df: pd.DataFrame, *, per_class: int = 2, seed: int = 0) -> pd.DataFrame:
    """Pick example clips of each class, from the test split when it has some, different engines/speakers first."""
    picked = []
    for _, group in df.groupby("label", sort=True):
        if "split" in group.columns and (group["split"] == "test").any():
            group = group[group["split"] == "test"]
        group = group.sample(frac=1.0, random_state=seed)
        first = group.drop_duplicates(["engine", "speaker"])
        picked.append(pd.concat([first, group.drop(first.index)]).head(per_class))
    return pd.concat(picked) if picked else df.head(0)


def examples_html(df: pd.DataFrame, *, per_class: int = 2, seed: int = 0, run_dir: Path | None = None) -> str:
    """Audio players with spectrograms (the model's front end) for example clips of each class."""
    cards, features = [], model_features(run_dir)
    for row in pick_examples(df, per_class=per_class, seed=seed).itertuples():
        title = f"{row.label} · {row.engine} · {row.speaker}"
        png = spectrogram_png(row.path, title=title, features=features)
        cards.append(f'<div class="card" style="border:1px solid #ddd;padding:.4em"><b>{esc(title)}</b><br>'
                     f'{audio_tag(row.path)}<br>{img_tag(png, alt=title)}</div>')
    # inline flex style: notebook renderings do not carry the report's stylesheet
    return f'<div class="cards" style="display:flex;flex-wrap:wrap;gap:1em">{"".join(cards)}</div>'


def clip_browser(df: pd.DataFrame) -> Any:
    """An ipywidgets browser: pick a class and engine, then a clip, and listen to it (live kernels only)."""
    import ipywidgets as w
    from IPython.display import Audio, display

    label = w.Dropdown(options=sorted(df["label"].unique()), description="class")
    engine = w.Dropdown(description="engine")
    clip = w.Dropdown(description="clip", layout=w.Layout(width="60%"))
    out = w.Output()

    def on_label(_=None):
        engine.options = sorted(df.loc[df["label"] == label.value, "engine"].unique())

    def on_engine(_=None):
        rows = df[(df["label"] == label.value) & (df["engine"] == engine.value)]
        clip.options = [(f"{r.speaker} · {Path(r.path).name} ({r.duration:.1f} s)", r.path) for r in rows.itertuples()]

    def on_clip(_=None):
        out.clear_output()
        with out:
            if clip.value:
                display(Audio(load_clip(clip.value, 15.0), rate=SR))

    label.observe(on_label, "value")
    engine.observe(on_engine, "value")
    clip.observe(on_clip, "value")
    on_label()
    return w.VBox([w.HBox([label, engine]), clip, out])


# ---------------------------------------------------------------- run-directory sections


def _read(path: Path) -> Any:
    return read_json(path) if path.is_file() else {}


def model_location(run_dir: Path) -> tuple[Path | None, dict[str, Any]]:
    """The run's model directory (copy in run_dir/model or the store entry named by model_link.json)."""
    link = _read(run_dir / "model_link.json") or _read(run_dir / "model" / "model_link.json")
    target = Path(link["path"]) if link.get("path") else run_dir / "model"
    return (target if target.is_dir() else None), link


def training_section(run_dir: Path) -> str:
    """Training curves, the history table and the training summary of 03_finetune."""
    history_path = next((p for p in (run_dir / "history.csv", run_dir / "model" / "history.csv") if p.is_file()), None)
    if history_path is None:
        return '<p class="muted">No training history (03_finetune did not finish).</p>'
    history = pd.read_csv(history_path)
    rel = os.path.relpath(history_path, run_dir)
    train = _read(run_dir / "train.json")
    summary = {k: v for k, v in train.items() if not isinstance(v, (dict, list))}
    model_dir, link = model_location(run_dir)
    where = link.get("path") or (str(model_dir) if model_dir else "(missing)")
    return (img_tag(figure_png(plots.training_curves(history)), alt="training curves")
            + (table_html(pd.DataFrame({"name": list(summary), "value": [fmt(v) for v in summary.values()]}))
               if summary else "")
            + f'<p>Model: <code>{esc(where)}</code>. History: <a href="{esc(rel)}">{esc(rel)}</a></p>'
            + table_html(history))


HEADLINE = ("eer", "roc_auc", "accuracy", "precision", "recall", "f1", "fpr", "fnr", "threshold", "n_test")


def evaluation_section(run_dir: Path) -> str:
    """Headline metrics with intervals, the figures, baselines, breakdowns, robustness and calibration."""
    m = _read(run_dir / "metrics.json")
    if not m:
        return '<p class="muted">No metrics.json (04_evaluate did not finish).</p>'
    ci = m.get("ci", {})
    head = pd.DataFrame([{"metric": k, "value": fmt(m[k]),
                          "95% interval": "–".join(fmt(x) for x in ci[k]) if isinstance(ci.get(k), list) else ""}
                         for k in HEADLINE if k in m])
    parts = [f'<p class="warn">{esc(m["shortcut_warning"])}</p>' if m.get("shortcut_warning") else "",
             f"<div class='row'><div>{table_html(head)}<p class='muted'>{esc(ci.get('resampling', ''))}</p></div>"]
    base = m.get("baselines", {})
    if base:
        rows = {"model (this run)": m, **base}
        parts.append("<div><h4>baselines, same test clips</h4>" + table_html(pd.DataFrame(
            [{"scorer": k, **{c: fmt(v[c]) for c in ("eer", "roc_auc", "accuracy") if c in v}}
             for k, v in rows.items()]))
            + "</div>")
    parts.append("</div>")
    parts.append('<div class="gallery">' + "".join(
        f'<figure>{img_tag(figure_png(fig), alt=name)}<figcaption>{esc(name.replace("_", " "))}</figcaption></figure>'
        for name, fig in evaluation_figures(run_dir, m).items()) + "</div>")
    if isinstance(m.get("operating_point"), dict):
        parts.append("<h4>what a user gets at the shipped threshold (share called AI_GENERATED / HUMAN)</h4>"
                     + records_table(m["operating_point"], "class or family"))
    if isinstance(m.get("attribution"), dict):
        att = m["attribution"]
        parts.append("<h4>attribution (generator-family head, test AI clips)</h4>"
                     + kv_table({k: att.get(k) for k in ("families", "n_ai", "n_known_family",
                                                         "accuracy_known_families", "unknown_families")})
                     + f"<p class='muted'>{esc(att.get('note', ''))}</p>")
    lofo_result = _read(run_dir / "lofo.json")
    if lofo_result:
        from voicelib.evaluation import lofo

        parts.append("<h4>leave one family out (trained without each AI family, all its clips scored against "
                     "the test humans)</h4>"
                     + table_html(lofo.table(lofo_result))
                     + ("" if lofo_result.get("complete") else "<p class='warn'>incomplete: not every fold ran</p>"))
    for column, table in m.get("breakdowns", {}).items():
        parts.append(f"<h4>per {esc(column)}</h4>{records_table(table, column)}")
    probe, boxes = base.get("shortcut_probe", {}), []
    if probe:
        boxes.append(f"<div><h4>shortcut probe: {esc(probe.get('verdict', ''))}</h4>"
                     "<p class='muted'>logistic regression"
                     f" on trivial cues only; its weights</p>{kv_table(probe.get('weights', {}))}</div>")
    for key in ("calibration", "inconclusive", "val_check"):
        if isinstance(m.get(key), dict):
            boxes.append(f"<div><h4>{esc(key.replace('_', ' '))}</h4>{kv_table(m[key])}</div>")
    parts.append(f"<div class='row'>{''.join(boxes)}</div>")
    if m.get("robustness"):
        clean = {"clean (as above)": {"eer": m.get("eer"), "roc_auc": m.get("roc_auc"), "accuracy": m.get("accuracy"),
                                      "n": m.get("n_test")}}
        parts.append("<h4>robustness (test clips degraded)</h4>"
                     + (records_table({**clean, **m["robustness"]}, "condition")
                        if all(isinstance(v, dict) for v in m["robustness"].values())
                        else nested_html(m["robustness"])))
    else:
        parts.append('<h4>robustness</h4><p class="muted">not evaluated in this run (robustness=False)</p>')
    rest = {k: v for k, v in m.items() if k not in {*HEADLINE, "ci", "baselines", "figures", "breakdowns", "robustness",
                                                   "operating_point", "calibration", "inconclusive", "val_check",
                                                   "shortcut_warning", "attribution"}}
    parts.append(f"<details><summary>all other values in metrics.json</summary>{nested_html(rest)}</details>")
    return "".join(parts)


def evaluation_figures(run_dir: Path, result: dict) -> dict[str, Any]:
    """The evaluation figures, drawn from scores.csv (and val_scores.csv) and metrics.json."""
    if not (run_dir / "scores.csv").is_file():
        return {}
    val = run_dir / "val_scores.csv"
    return plots.evaluation_figures(pd.read_csv(run_dir / "scores.csv"), result,
                                    pd.read_csv(val) if val.is_file() else None)


def augment_section(run_dir: Path, *, per_class: int | None = None) -> str:
    """Augmentation settings and before/after players of 02_augment (at most `per_class` examples per class)."""
    info = _read(run_dir / "augment" / "augment.json")
    if not info:
        return '<p class="muted">No augment/augment.json (02_augment did not finish).</p>'
    rows, shown, features = [], {}, model_features(run_dir)
    for ex in info.get("examples", []):
        shown[ex["label"]] = shown.get(ex["label"], 0) + 1
        if per_class is not None and shown[ex["label"]] > per_class:
            continue
        cells = []
        for side in ("before", "after"):
            path = Path(ex[side]) if Path(ex[side]).is_absolute() else run_dir / "augment" / ex[side]
            if path.is_file():
                png = spectrogram_png(path, title=f"{ex['label']} {side}", features=features)
                cells.append(f"<td>{audio_tag(path)}<br>{img_tag(png)}</td>")
            else:
                cells.append(f"<td class='muted'>missing {esc(path.name)}</td>")
        rows.append(f"<tr><td>{esc(ex['label'])}<br><small>{esc(ex.get('transforms', ''))}</small></td>"
                    f"{''.join(cells)}</tr>")
    config = nested_html(info.get("config", {}))
    return (f"<details><summary>settings (seed {esc(info.get('seed', ''))})</summary>{config}</details>"
            f"<table class='tbl'><tr><th>clip</th><th>before</th><th>after</th></tr>{''.join(rows)}</table>")


def data_section(run_dir: Path, *, seed: int = 0) -> str:
    """Counts and minutes per class, engine, speaker and split; durations; examples to listen to."""
    path = run_dir / "manifest.csv"
    if not path.is_file():
        return '<p class="muted">No manifest.csv (01_collect_data did not finish).</p>'
    from voicelib.data.manifest import read_manifest

    df = read_manifest(path)
    quarantine = run_dir / "quarantine.csv"
    n_quarantined = len(pd.read_csv(quarantine)) if quarantine.is_file() else 0
    tables = data_tables(df)
    notes = _read(run_dir / "data_summary.json").get("notes", [])
    parts = (["".join(f'<p class="warn">{esc(n)}</p>' for n in notes)]
             + [f"<p>{len(df)} clips, {df['duration'].sum() / 60:.1f} minutes, {df['speaker'].nunique()} speakers; "
                f"{n_quarantined} clips quarantined (<a href='quarantine.csv'>quarantine.csv</a>).</p>"])
    titles = {"split_by_class": "per split and class", "label": "per class", "family": "per family",
              "engine": "per engine"}
    parts.append("<div class='row'>" + "".join(f"<div><h4>{t}</h4>{table_html(tables[k])}</div>"
                                               for k, t in titles.items() if k in tables)
                 + f"<div>{img_tag(figure_png(plots.durations(df)), alt='durations')}</div></div>")
    if "speaker" in tables:
        parts.append(f"<details><summary>per speaker ({df['speaker'].nunique()} speakers)</summary>"
                     f"{table_html(tables['speaker'], max_rows=200)}</details>")
    parts.append("<h4>examples (first seconds, test split)</h4>" + examples_html(df, seed=seed, run_dir=run_dir))
    return "".join(parts)


def model_card(run_dir: Path) -> str:
    """Intended use, data, performance, limitations and what was not tested, from the run's files."""
    params = _read(run_dir / "params.json").get("parameters", {})
    language = params.get("language", "?")
    data = _read(run_dir / "data_summary.json")
    metrics = _read(run_dir / "metrics.json")
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
    if int(params.get("epochs", 99)) <= 1:
        limits.append("One training epoch (smoke run?): this model is a pipeline check, not a usable detector.")
    eer, auc = metrics.get("eer"), metrics.get("roc_auc")
    perf = (f"Test EER {fmt(eer)}, ROC-AUC {fmt(auc)} on the held-out test split (speakers and groups unseen "
            "in training; threshold chosen on validation)." if eer is not None else "Not evaluated.")
    final = _read(run_dir / "final.json")
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
    from voicelib.stages import final_fit

    which = table_html(final_fit.which_model_table(run_dir)) if (run_dir / "train.json").is_file() else ""
    return (f"<h4>Intended use</h4><p>Flag {esc(language)} speech clips that are likely AI-generated (TTS), as one "
            "signal for a human reviewer. Not for legal or forensic decisions, nor for judging single clips "
            "without a person listening.</p>"
            f"<h4>Data</h4><p>{esc(limits[0])} AI engines: {esc(', '.join(engines) or 'none')}.</p>"
            f"<h4>Performance</h4><p>{esc(perf)}</p><h4>Limitations</h4>{li(limits[1:] or ['none noted'])}"
            f"<h4>Not tested</h4>{li(untested)}<h4>Which model is which</h4>{which}")


def environment_section(run_dir: Path) -> str:
    """Versions, seed, git revision, device and each stage's status and duration, with links."""
    info = _read(run_dir / "params.json")
    params, env = info.get("parameters", {}), info.get("environment", {})
    train = _read(run_dir / "train.json")
    env = {**env, "seed": params.get("seed"), "device": train.get("device", params.get("device"))}
    stages = _read(run_dir / "stages.json").get("stages", {})
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


def _header(run_dir: Path) -> str:
    params = _read(run_dir / "params.json")
    metrics = _read(run_dir / "metrics.json")
    base = metrics.get("baselines", {})
    pct = lambda v: None if v is None else f"{100 * v:.1f}%"  # noqa: E731
    kpis = [("test EER", pct(metrics.get("eer"))), ("ROC-AUC", metrics.get("roc_auc")),
            ("test clips", metrics.get("n_test")),
            ("LFCC-GMM EER", pct(base.get("lfcc_gmm", {}).get("eer"))),
            ("one-class GMM EER", pct(base.get("gmm_novelty", {}).get("eer"))),
            ("shortcut-probe EER", pct(base.get("shortcut_probe", {}).get("eer")))]
    lofo_result = _read(run_dir / "lofo.json")
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
    stages = _read(run_dir / "stages.json").get("stages", {})
    failed = [f"{s}: {v.get('error')}" for s, v in stages.items() if v.get("status") == "failed"]
    notes = "".join(f'<p class="fail">{esc(f)}</p>' for f in failed)
    notes += "".join(f'<p class="warn">Collection: {esc(n)}</p>'
                     for n in _read(run_dir / "data_summary.json").get("notes", []))
    if metrics.get("shortcut_warning"):
        notes += f'<p class="warn">{esc(metrics["shortcut_warning"])}</p>'
    final = _read(run_dir / "final.json")
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


SECTIONS = [("data", "Data", data_section), ("augmentation", "Augmentation", partial(augment_section, per_class=2)),
            ("training", "Training", training_section), ("evaluation", "Evaluation", evaluation_section),
            ("model-card", "Model card", model_card), ("environment", "Environment", environment_section)]


def write_index(run_dir: str | os.PathLike) -> Path:
    """Write run_dir/index.html: one self-contained page (inline CSS, base64 images and audio, no CDN)."""
    run_dir = Path(run_dir).resolve()
    seed = int(_read(run_dir / "params.json").get("parameters", {}).get("seed", 0) or 0)
    stages = _read(run_dir / "stages.json").get("stages", {})
    links = " ".join(f'<a href="{s}.html">{esc(stage_title(s))}</a>' for s in stages)
    nav = "".join(f'<a href="#{a}">{t}</a>' for a, t, _ in SECTIONS)
    body = [_header(run_dir), f"<nav>{nav}<br><span class='muted'>notebooks:</span> {links}</nav>"]
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
    with atomic_write(run_dir / "index.html", "w", encoding="utf-8") as handle:
        handle.write(page)
    if failed:
        raise ReportError(f"{run_dir / 'index.html'}: written, but {len(failed)} section(s) failed: "
                          f"{'; '.join(failed)}")
    return run_dir / "index.html"
