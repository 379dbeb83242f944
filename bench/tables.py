"""Markdown tables from bench/results/results.json (written by run_results.py) and the speed benchmarks.

    .venv/bin/python bench/tables.py        # rewrites bench/results/results_tables.md
"""
from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def pct(x) -> str:
    """A rate as a percentage, or a dash when missing."""
    return "–" if x is None else f"{100 * x:.1f}"


def ci(c: dict | None, key: str) -> str:
    """A bootstrap interval as 'lo–hi' in percent."""
    if not c or key not in c:
        return "–"
    lo, hi = c[key]
    return f"{100 * lo:.1f}–{100 * hi:.1f}" if key == "eer" else f"{lo:.3f}–{hi:.3f}"


def quality(report: dict) -> list[str]:
    """Our model, the common recipe and LFCC-GMM on the same test split, per language."""
    rows = ["| language | test clips (human / AI) | ours: EER % [95% CI] | ours: ROC-AUC [95% CI] | "
            "common recipe: EER % [CI] | recipe ROC-AUC | LFCC-GMM: EER % | LFCC-GMM ROC-AUC | shortcut probe: EER % |",
            "|---|---|---|---|---|---|---|---|---|"]
    for lang, r in report["languages"].items():
        p, rec = r["pipeline"], r["recipe"]
        gmm, probe = p.get("lfcc_gmm") or {}, p.get("shortcut_probe") or {}
        rows.append(f"| {lang} | {p['n_test_human']} / {p['n_test_ai']} | {pct(p['eer'])} [{ci(p['ci'], 'eer')}] | "
                    f"{p['roc_auc']:.3f} [{ci(p['ci'], 'roc_auc')}] | {pct(rec['eer'])} [{ci(rec['ci'], 'eer')}] | "
                    f"{rec['roc_auc']:.3f} | {pct(gmm.get('eer'))} | "
                    f"{'–' if gmm.get('roc_auc') is None else format(gmm['roc_auc'], '.3f')} | "
                    f"{pct(probe.get('eer'))} |")
    return rows


def engines(report: dict) -> list[str]:
    """Per-engine EER of our model: that engine's AI test clips against all human test clips."""
    rows = ["| language | engine | AI test clips | ours: EER % | ours: ROC-AUC |", "|---|---|---|---|---|"]
    for lang, r in report["languages"].items():
        for engine, e in r["pipeline"]["engines"].items():
            if engine != "human":
                auc = "–" if e.get("roc_auc") is None else f"{e['roc_auc']:.3f}"
                rows.append(f"| {lang} | {engine} | {e['n']} | {pct(e.get('eer'))} | {auc} |")
    return rows


def robustness(report: dict) -> list[str]:
    """Test EER after re-encoding, ours and the common recipe."""
    conds = sorted({c for r in report["languages"].values() for c in r["pipeline"]["robustness"]})
    rows = ["| language | model | clean | " + " | ".join(conds) + " |", "|---|---|---|" + "---|" * len(conds)]
    for lang, r in report["languages"].items():
        for name, m in (("ours", r["pipeline"]), ("common recipe", r["recipe"])):
            rows.append(f"| {lang} | {name} | {pct(m['eer'])} | " +
                        " | ".join(pct(m["robustness"].get(c)) for c in conds) + " |")
    return rows


def loeo(report: dict) -> list[str]:
    """Leave-one-engine-out: EER on the engine never seen in training."""
    rows = ["| language | held-out engine | test clips (human / AI) | ours: EER % [95% CI] | ours: ROC-AUC | "
            "LFCC-GMM: EER % |",
            "|---|---|---|---|---|---|"]
    for lang, r in report["languages"].items():
        for engine, m in r.get("loeo", {}).items():
            gmm = m.get("lfcc_gmm") or {}
            rows.append(f"| {lang} | {engine} | {m['n_test_human']} / {m['n_test_ai']} | {pct(m['eer'])} "
                        f"[{ci(m['ci'], 'eer')}] | {m['roc_auc']:.3f} | {pct(gmm.get('eer'))} |")
    return rows


def timings(report: dict) -> list[str]:
    """Wall time of each pipeline stage and of the comparison runs, in seconds."""
    stages = ["01_collect_data", "02_augment", "03_finetune", "04_evaluate", "05_report"]
    rows = ["| language | " + " | ".join(stages) + " | recipe train | LOEO runs (train+eval) |",
            "|---|" + "---|" * (len(stages) + 2)]
    for lang, r in report["languages"].items():
        s = r["pipeline"]["stage_seconds"]
        loeo_s = sum(m["train_seconds"] + m["eval_seconds"] for m in r.get("loeo", {}).values())
        rows.append(f"| {lang} | " + " | ".join(f"{s.get(k, 0):.0f}" for k in stages) +
                    f" | {r['recipe']['train_seconds']:.0f} | {loeo_s:.0f} |")
    return rows


def speed() -> list[str]:
    """Feature, training and detection throughput from the speed benchmarks' JSON files."""
    rows = ["| what | figure | source |", "|---|---|---|"]
    for name, describe in (("features.json", _features), ("train.json", _train), ("detect.json", _detect)):
        path = RESULTS / name
        if path.is_file():
            rows += [f"| {what} | {figure} | bench/results/{name} |"
                     for what, figure in describe(json.loads(path.read_text()))]
    return rows


def _features(d: dict) -> list[tuple[str, str]]:
    return [(f"decode + resample + log-mel, {r['format'].upper()}, {d['machine'].get('torch_threads', 2)} threads",
             f"{r['decode_plus_logmel_x_realtime']:.0f}x real time ({r['audio_seconds'] / 60:.0f} min of audio)")
            for r in d["results"]]


def _train(d: dict) -> list[tuple[str, str]]:
    return [(f"training, width {r['width']}, {r.get('threads', '?')} thread(s), {r.get('device', 'cpu')}",
             f"{r['segments_per_s']:.1f} 3-s segments/s, peak RSS {r.get('peak_rss_mb', 0):.0f} MB")
            for r in d.get("throughput", []) if "segments_per_s" in r]


def _detect(d: dict) -> list[tuple[str, str]]:
    return [(f"detection incl. decoding ({d['backend']}, {d['threads']} threads, "
             f"{d['audio_seconds'] / 60:.0f} min of audio)",
             f"{d['x_real_time']:.0f}x real time")]


def write_tables(report: dict, path: Path) -> None:
    """Write every table to `path`."""
    m = report["machine"]
    parts = [f"Machine: {m['cpu']}, {m['cpu_count']} cores, {m['platform']}, torch {m['torch']}; {m['date']}.",
             f"Command: `{report['command']}`; settings {report['settings']}.", "",
             "## Quality on the speaker-disjoint test split", *quality(report), "",
             "## Per AI engine (ours)", *engines(report), "", "## Robustness (test EER %, re-encoded test set)",
             *robustness(report), "", "## Leave one engine out", *loeo(report), "",
             "## Wall time (seconds)", *timings(report), "", "## Speed", *speed(), ""]
    path.write_text("\n".join(parts), encoding="utf-8")


if __name__ == "__main__":
    write_tables(json.loads((RESULTS / "results.json").read_text()), RESULTS / "results_tables.md")
