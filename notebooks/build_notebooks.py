"""Write the five stage notebooks (outputs cleared) from the cell lists below: `python notebooks/build_notebooks.py`.

The .ipynb files are committed; edit them here (or in JupyterLab, then keep this file in step) so that every
notebook has one tagged parameters cell, the same imports and logging, and a checks cell at the end.
"""
from __future__ import annotations

from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
SETUP = """import logging
import sys
from pathlib import Path

import pandas as pd
from IPython.display import HTML, display

from voicelib import io, manifest, report
{imports}
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stdout, force=True)
run_path = Path(run_dir)
run_path.mkdir(parents=True, exist_ok=True)"""
COMMON = ('run_dir: str = "../reports/hindi/interactive"  # run directory: stages exchange files only here\n'
          "seed: int = 0  # seed for sampling, splits, augmentation and training")

NOTEBOOKS = {
    "01_collect_data": [
        ("md", """# 1. Collect data

Human speech and AI-generated speech for one language, in one manifest. Human speech comes from FLEURS
(online) and from local folders laid out as `<dir>/<language>/{human,ai}/*`; AI speech is synthesised
from **the same sentences** the human clips say (gTTS, edge-tts, or espeak-ng offline), so that the
text is no clue to the class. Every clip is validated (decodable, not silent, long enough, not a duplicate);
the rest is quarantined with a reason. The split keeps speakers, recording groups and sentences disjoint
between train, validation and test."""),
        ("params", 'language: str = "hindi"  # english, hindi, tamil, malayalam or telugu\n' + COMMON + """
data_root: str = "../data"  # collected clips and the manifest persist in <data_root>/<language>/
local_dirs: list = []  # your recordings in the <dir>/<language>/{human,ai}/* layout (--data-dir)
human_sources: list = ["fleurs"]  # online human speech; skipped (said once) when offline
tts_engines: list = ["gtts"]  # AI speech engines: gtts, edge, espeak; online ones fall back to espeak
limit: int = 500  # at most this many clips per source and class
val_fraction: float = 0.15  # share of audio (by speaker and group) for validation
test_fraction: float = 0.2  # share of audio (by speaker and group) for the test"""),
        ("code", SETUP.format(imports="from voicelib import sources") + '\ncollect_dir = Path(data_root) / language'),
        ("md", "## Collect\nAlready collected clips are reused; new ones are added to `<data_root>/<language>/manifest.csv`. "
               "With no human speech at all this cell stops with instructions."),
        ("code", "df = sources.collect_all(collect_dir, language=language, human_sources=human_sources,\n"
                 "                         tts_engines=tts_engines, local_dirs=local_dirs, limit=limit, seed=seed)"),
        ("code", "manifest.summary(df)"),
        ("md", "## Quarantine\nClips that could not be used, with the reason."),
        ("code", 'quarantine = manifest.read_manifest(collect_dir / "quarantine.csv")'),
        ("code", 'quarantine.get("reason", pd.Series(dtype=str)).str.split(" [(]").str[0].value_counts()'),
        ("md", "## Split\nSpeaker-, group- and sentence-disjoint. Clips whose sentence already sits in another split "
               "are `excluded`."),
        ("code", "split = manifest.assign_splits(df, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)"),
        ("code", "manifest.check_leakage(split)"),
        ("code", 'manifest.write_manifest(split, run_path / "manifest.csv")'),
        ("code", 'manifest.write_manifest(quarantine, run_path / "quarantine.csv")'),
        ("code", 'collect_notes = io.read_json(collect_dir / "collect_state" / "last_run.json")["notes"]\ncollect_notes'),
        ("code", 'summary = report.save_data_summary(split, run_path / "data_summary.json", quarantined=len(quarantine),\n'
                 '                                   notes=collect_notes)'),
        ("md", "## What we have\nClips and minutes per split and class, per engine and per speaker."),
        ("code", "tables = report.data_tables(split)"),
        ("code", 'tables["split_by_class"]'),
        ("code", 'tables["engine"]'),
        ("code", 'tables["speaker"].head(30)'),
        ("code", "report.duration_histogram(split);"),
        ("md", "## Listen\nPick a class and an engine, then a clip (needs a live kernel). Below it, fixed examples "
               "of each class that also play in the HTML rendering."),
        ("code", "report.clip_browser(split)"),
        ("code", "HTML(report.examples_html(split, per_class=2, seed=seed))"),
        ("md", "## Checks"),
        ("code", """counts = split[split["split"] != "excluded"].groupby("split")["label"].nunique()
assert set(split["label"]) == {"human", "ai"}, f"need both classes, have {sorted(set(split['label']))}"
assert counts.reindex(["train", "val", "test"]).eq(2).all(), f"every split needs both classes: {counts.to_dict()}"
manifest.check_leakage(manifest.read_manifest(run_path / "manifest.csv"))
counts"""),
    ],
    "02_augment": [
        ("md", """# 2. Augmentation

The same random transforms are applied to **both classes alike** during training (noise, gain, time-stretch,
pitch-shift, reverb, telephone band, codecs), so that channel and codec are no clue to the class. Here we fix
the settings and write before/after examples to listen to; training applies them on the fly."""),
        ("params", COMMON + """
augment_overrides: dict = {}  # AugmentConfig fields to change, e.g. {"p_codec": 0.5}
augment_examples: int = 4  # before/after examples per class"""),
        ("code", SETUP.format(imports="from voicelib import augment")),
        ("code", 'split = manifest.read_manifest(run_path / "manifest.csv")'),
        ("code", "config = augment.AugmentConfig.from_dict(augment_overrides)\nconfig"),
        ("code", 'examples = augment.examples(split, run_path / "augment", config=config, n=augment_examples, seed=seed)\n'
                 'examples[["label", "transforms"]]'),
        ("md", "## Before and after\nThe first seconds of each example, with its log-mel spectrogram."),
        ("code", "HTML(report.augment_section(run_path))"),
        ("md", "## Checks"),
        ("code", """assert (run_path / "augment" / "augment.json").is_file(), "augment.json was not written"
assert set(examples["label"]) == set(split["label"]), "examples must cover both classes"
assert augment.AugmentConfig.from_dict(io.read_json(run_path / "augment" / "augment.json")["config"]) == config"""),
    ],
    "03_finetune": [
        ("md", """# 3. Train or fine-tune

A ResNet18 on log-mel spectrograms with an AI/human head (plus language and multi-speaker heads), trained on
the train split with the augmentation of stage 2, selected on the **validation EER**. The operating threshold
and a Platt calibration are fitted on validation scores. The model is registered in the model store."""),
        ("params", 'language: str = "hindi"  # language of the model (the store keeps one current model per language)\n'
                   + COMMON + """
data_root: str = "../data"  # decoded audio is cached in <data_root>/.cache
models_root: str = "../models"  # model store: the model is registered in <models_root>/<language>/
epochs: int = 12  # passes over the training set (early stopping may end sooner)
patience: int = 4  # epochs without validation improvement before stopping
lr: float = 0.001  # peak learning rate (AdamW, warm-up then cosine decay)
batch_size: int = 32  # segments per batch
width: int = 32  # ResNet18 channel width (64 is the standard ResNet18)
segment_seconds: float = 3.0  # length of the training segments
segments_per_epoch: int = 0  # segments drawn per epoch; 0 means one pass over the training audio
mode: str = "scratch"  # scratch, full, frozen (backbone fixed) or head (AI head only)
base_model: str = ""  # model directory to fine-tune from; empty trains from scratch
device: str = "auto"  # auto, cpu or cuda
resume_training: bool = False  # continue an interrupted training from model/ instead of starting over
promote: bool = True  # make the new model the current one of its language in the store"""),
        ("code", SETUP.format(imports="from voicelib import augment, model, store, train")),
        ("code", 'split = manifest.read_manifest(run_path / "manifest.csv")'),
        ("code", 'aug_config = augment.AugmentConfig.from_dict(io.read_json(run_path / "augment" / "augment.json")["config"])'),
        ("code", "model_config = model.ModelConfig(width=width, segment_seconds=segment_seconds)\nmodel_config"),
        ("md", "## Train\nOne log line per epoch: losses, validation EER and ROC-AUC."),
        ("code", 'result = train.fit(split, out_dir=run_path / "model", model_config=model_config, augment_config=aug_config,\n'
                 "                   epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, device=device, mode=mode,\n"
                 "                   base_model=base_model or None, cache_dir=Path(data_root) / \".cache\", patience=patience,\n"
                 "                   segments_per_epoch=segments_per_epoch or None, resume=resume_training, progress=False)"),
        ("code", "result.history"),
        ("code", "report.training_curves(result.history);"),
        ("code", 'result.history.to_csv(run_path / "history.csv", index=False)'),
        ("md", "## Register\nThe model directory is copied into the store (never overwriting an earlier version)."),
        ("code", "entry = store.register(result.model_dir, root=models_root, language=language, promote=promote)\nentry"),
        ("code", 'io.write_json(run_path / "train.json", {\n'
                 '    "model_dir": str(result.model_dir), "store_entry": str(entry), "promoted": promote,\n'
                 '    "best_epoch": result.best_epoch, "best_val_eer": result.best_val_eer, "val_auc": result.val_auc,\n'
                 '    "threshold": result.threshold, "calibration": list(result.calibration),\n'
                 '    "stopped_early": result.stopped_early, "epochs_run": len(result.history), "mode": mode,\n'
                 '    "device": str(train.resolve_device(device))})'),
        ("md", "## Checks"),
        ("code", """assert (run_path / "model" / "model.safetensors").is_file(), "no weights written"
assert result.history["train_loss"].notna().all(), "training loss is NaN"
assert 0.0 <= result.best_val_eer <= 1.0, f"validation EER {result.best_val_eer} out of range"
store.read_meta(entry)["threshold"]"""),
    ],
    "04_evaluate": [
        ("md", """# 4. Evaluate

On the **test split only** (speakers, groups and sentences unseen in training), scored exactly as detection
scores files, with the threshold and calibration chosen on validation. Intervals come from a bootstrap over
speakers. Beside the model: an LFCC-GMM baseline and a *shortcut probe* that sees only trivial cues (level,
silence, bandwidth, duration) - if the probe does well, the data has shortcuts and the model's score means
less than it seems."""),
        ("params", COMMON + """
device: str = "auto"  # auto, cpu or cuda
bootstrap: int = 1000  # bootstrap resamples for the confidence intervals
robustness: bool = True  # also score the test set through codecs, noise and telephone band
baselines: bool = True  # LFCC-GMM baseline and the shortcut probe
gmm_components: int = 32  # Gaussians per class in the LFCC-GMM baseline"""),
        ("code", SETUP.format(imports="from voicelib import evaluate")),
        ("code", 'split = manifest.read_manifest(run_path / "manifest.csv")'),
        ("code", 'metrics = evaluate.evaluate_run(run_path / "model", split, out_dir=run_path, device=device, seed=seed,\n'
                 "                               n_boot=bootstrap, robust=robustness, baselines=baselines,\n"
                 "                               gmm_components=gmm_components)"),
        ("code", 'pd.Series(metrics)[["eer", "roc_auc", "threshold", "n_test"]]'),
        ("code", 'metrics["shortcut_warning"]'),
        ("md", "## Figures and tables\nConfusion matrix, ROC and DET curves, score histograms, calibration; "
               "breakdowns per language, engine and source; robustness; baselines."),
        ("code", "HTML(report.evaluation_section(run_path))"),
        ("md", "## Checks"),
        ("code", """assert (run_path / "metrics.json").is_file() and (run_path / "scores.csv").is_file()
assert 0.0 <= metrics["eer"] <= 1.0 and metrics["n_test"] > 0
assert set(pd.read_csv(run_path / "scores.csv")["label"]) == {"human", "ai"}, "test scores need both classes"
sorted(p.name for p in (run_path / "figures").glob("*.png"))"""),
    ],
    "05_report": [
        ("md", """# 5. Report

`index.html` in the run directory is the report a reviewer reads: data, augmentation, training, evaluation,
model card and environment on one self-contained page (images and audio inline, no network needed)."""),
        ("params", COMMON),
        ("code", SETUP.format(imports="")),
        ("code", "index = report.write_index(run_path)\nindex"),
        ("code", "HTML(report.model_card(run_path))"),
        ("code", "HTML(report.environment_section(run_path))"),
        ("code", "HTML(f'<p>Open <a href=\"{index.name}\">{index}</a> for the full report.</p>')"),
        ("md", "## Checks"),
        ("code", """page = index.read_text(encoding="utf-8")
assert "data:image/png;base64," in page, "the report embeds no figure"
assert 'src="http' not in page, "the report must not load anything from the network"
len(page) // 1024"""),
    ],
}


def build(name: str, cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    """Return one notebook with the parameters cell tagged."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for kind, source in cells:
        if kind == "md":
            nb.cells.append(nbformat.v4.new_markdown_cell(source))
            continue
        cell = nbformat.v4.new_code_cell(source)
        if kind == "params":
            cell.metadata["tags"] = ["parameters"]
        nb.cells.append(cell)
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{name[:2]}-{i:02d}"  # stable ids: rebuilding gives the same files
    return nb


def main() -> None:
    """Write every notebook beside this script."""
    for name, cells in NOTEBOOKS.items():
        nbformat.write(build(name, cells), HERE / f"{name}.ipynb")
        print(f"wrote {HERE / name}.ipynb")


if __name__ == "__main__":
    main()
