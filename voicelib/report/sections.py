"""The report's sections on data, augmentation, training and evaluation, each built from the run's files."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pandas as pd

from voicelib.audio.features import FeatureConfig
from voicelib.data.manifest import read_manifest
from voicelib.data.manifest import tables as manifest_tables
from voicelib.files import RunDir, read_json
from voicelib.model.saving import CONFIG, HISTORY
from voicelib.report import plots
from voicelib.report.html import (
    CLIP_SECONDS,
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


def model_features(run_dir: Path | None) -> Any:
    """The FeatureConfig of the run's model (the model's own front end), or the default before training."""

    config = read_run_file(RunDir(run_dir).model / CONFIG) if run_dir else {}
    return FeatureConfig.from_dict(config["features"]) if config.get("features") else FeatureConfig()


def spectrogram_png(path: str | os.PathLike, *, title: str, features: Any) -> str:
    """Base64 PNG of the first seconds of a clip through the model's front end."""
    return figure_png(plots.spectrogram(load_clip(path, CLIP_SECONDS), features, title=title))


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


def read_run_file(path: Path) -> Any:
    """A JSON file of the run, or {} when its stage has not run."""
    return read_json(path) if path.is_file() else {}


def model_location(run_dir: Path) -> Path | None:
    """The run's evaluated model directory, or None before 03_finetune wrote it."""
    model = RunDir(run_dir).model
    return model if model.is_dir() else None


def training_section(run_dir: Path) -> str:
    """Training curves, the history table and the training summary of 03_finetune."""
    run = RunDir(run_dir)
    history_path = next((p for p in (run.history, run.model / HISTORY) if p.is_file()), None)
    if history_path is None:
        return '<p class="muted">No training history (03_finetune did not finish).</p>'
    history = pd.read_csv(history_path)
    rel = os.path.relpath(history_path, run_dir)
    train = read_run_file(RunDir(run_dir).train_summary)
    summary = {k: v for k, v in train.items() if not isinstance(v, (dict, list))}
    model_dir = model_location(run_dir)
    where = str(model_dir) if model_dir else "(missing)"
    return (img_tag(figure_png(plots.training_curves(history)), alt="training curves")
            + (table_html(pd.DataFrame({"name": list(summary), "value": [fmt(v) for v in summary.values()]}))
               if summary else "")
            + f'<p>Model: <code>{esc(where)}</code>. History: <a href="{esc(rel)}">{esc(rel)}</a></p>'
            + table_html(history))


HEADLINE = ("eer", "roc_auc", "accuracy", "precision", "recall", "f1", "fpr", "fnr", "threshold", "n_test")


def evaluation_section(run_dir: Path) -> str:
    """Headline metrics with intervals, the figures, baselines, breakdowns, robustness and calibration."""
    m = read_run_file(RunDir(run_dir).metrics)
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
    lofo_result = read_run_file(RunDir(run_dir).lofo)
    if lofo_result:

        parts.append("<h4>leave one family out (trained without each AI family, all its clips scored against "
                     "the test humans)</h4>"
                     + table_html(lofo_table(lofo_result))
                     + ("" if lofo_result.get("complete") else "<p class='warn'>incomplete: not every fold ran</p>"))
    if m.get("per_language"):
        parts.append("<h4>within each language (multilingual model)</h4>" + records_table(
            {lang: {"EER": v.get("eer"), "unseen-engine EER": (v.get("unseen_engine_eer") or {}).get("eer"),
                    "seen-engine EER": (v.get("seen_engine_eer") or {}).get("eer"), "test clips": v.get("n_test"),
                    "note": v.get("note", "")} for lang, v in m["per_language"].items()}, "language"))
    for column, table in m.get("breakdowns", {}).items():
        parts.append(f"<h4>per {esc(column)}</h4>{records_table(table, column)}")
    parts.append(_checks_and_robustness(m, base))
    rest = {k: v for k, v in m.items() if k not in {*HEADLINE, "ci", "baselines", "figures", "breakdowns", "robustness",
                                                   "operating_point", "calibration", "inconclusive", "val_check",
                                                   "shortcut_warning", "attribution", "per_language"}}
    parts.append(f"<details><summary>all other values in metrics.json</summary>{nested_html(rest)}</details>")
    return "".join(parts)


def _checks_and_robustness(m: dict, base: dict) -> str:
    """The shortcut probe, calibration, inconclusive and validation boxes, then the robustness table."""
    parts = []
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
    return "".join(parts)


def evaluation_figures(run_dir: Path, result: dict) -> dict[str, Any]:
    """The evaluation figures, drawn from scores.csv (and val_scores.csv) and metrics.json."""
    if not (RunDir(run_dir).scores).is_file():
        return {}
    val = RunDir(run_dir).val_scores
    return plots.evaluation_figures(pd.read_csv(RunDir(run_dir).scores), result,
                                    pd.read_csv(val) if val.is_file() else None)


def augment_section(run_dir: Path, *, per_class: int | None = None) -> str:
    """Augmentation settings and before/after players of 02_augment (at most `per_class` examples per class)."""
    info = read_run_file(RunDir(run_dir).augment_config)
    if not info:
        return '<p class="muted">No augment/augment.json (02_augment did not finish).</p>'
    rows, shown, features = [], {}, model_features(run_dir)
    for ex in info.get("examples", []):
        shown[ex["label"]] = shown.get(ex["label"], 0) + 1
        if per_class is not None and shown[ex["label"]] > per_class:
            continue
        cells = []
        for side in ("before", "after"):
            path = Path(ex[side]) if Path(ex[side]).is_absolute() else RunDir(run_dir).augment_dir / ex[side]
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
    path = RunDir(run_dir).manifest
    if not path.is_file():
        return '<p class="muted">No manifest.csv (01_collect_data did not finish).</p>'

    df = read_manifest(path)
    quarantine = RunDir(run_dir).quarantine
    n_quarantined = len(pd.read_csv(quarantine)) if quarantine.is_file() else 0
    tables = manifest_tables(df)
    notes = read_run_file(RunDir(run_dir).data_summary).get("notes", [])
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


def _pct100(value: float | None) -> float | None:
    return None if value is None else round(100 * value, 1)


def lofo_table(result: dict[str, Any]) -> pd.DataFrame:
    """One row per held-out family, then the mean and pooled rows (EER in %)."""
    rows = [{"held out": r["family"], "AI clips": r["n_ai"], "human clips": r["n_human"],
             "EER %": round(100 * r["eer"], 1),
             "95% interval": f"{100 * r['eer_ci'][0]:.1f}-{100 * r['eer_ci'][1]:.1f}",
             "LFCC-GMM EER %": _pct100(r.get("lfcc_gmm_eer")), "one-class GMM EER %": _pct100(r.get("gmm_novelty_eer")),
             "fused EER %": _pct100(r.get("fused_eer"))}
            for r in result["folds"]]
    for name, key in (("mean over families", "mean"), ("pooled", "pooled")):
        if result.get(f"{key}_eer") is not None:
            rows.append({"held out": name, "EER %": _pct100(result[f"{key}_eer"]),
                         "LFCC-GMM EER %": _pct100(result.get(f"lfcc_gmm_{key}_eer")),
                         "one-class GMM EER %": _pct100(result.get(f"gmm_novelty_{key}_eer")),
                         "fused EER %": _pct100(result.get(f"fused_{key}_eer"))})
    return pd.DataFrame(rows)
