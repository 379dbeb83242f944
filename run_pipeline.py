#!/usr/bin/env python
"""Run the six stage notebooks for a language (or several): collect, augment, fine-tune, evaluate, final fit, report.

    python run_pipeline.py --language hindi --data-dir ../shared/speech
    python run_pipeline.py --language hindi telugu english --data-dir ../shared/speech  # one multilingual model
    python run_pipeline.py --language hindi --smoke --data-dir ../shared/speech   # minutes on CPU
    python run_pipeline.py --resume --language hindi                               # finish the newest run

What one run does, top to bottom: read the parameters every notebook declares; merge notebook defaults
< a stored run's parameters < --smoke (configs/smoke.yaml) < --config YAML < command line; check every
value against RULES before any stage starts; create reports/<language>/<run-id>/ with params.json and
stages.json; execute the selected notebooks in STAGES order with papermill (their log lines stream to
the terminal), rendering each to HTML in the run directory; point reports/<language>/latest.json at the
run once every stage is done. The report is index.html. `--list-params` shows every parameter.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from voicelib.files import read_json
from voicelib.languages import LANGUAGE_NAMES, LANGUAGES
from voicelib.stages import runner
from voicelib.stages.params import Rule, collect_parameters, load_config, parse_set, resolve

ROOT = Path(__file__).resolve().parent
NOTEBOOKS = ROOT / "notebooks"
SMOKE = ROOT / "configs" / "smoke.yaml"
STAGES = ["01_collect_data", "02_augment", "03_finetune", "04_evaluate", "05_final_fit", "06_report"]

# command-line flag -> notebook parameter ("name.field" sets one field of a dict parameter)
FLAGS = {"data_dir": "local_dirs", "tts": "tts_engines", "human": "human_sources", "limit": "limit",
         "device": "device", "seed": "seed", "epochs": "training.epochs", "mode": "training.mode",
         "base_model": "training.base_model", "workers": "workers", "dask_scheduler": "dask_scheduler",
         "nproc_per_node": "nproc_per_node"}


def _train_config(value: dict[str, Any]) -> None:
    from voicelib.training.config import TrainConfig

    cfg = TrainConfig.from_dict(value)
    if cfg.base_model and not (Path(cfg.base_model) / "config.json").is_file():
        raise ValueError(f"base_model {cfg.base_model!r} is not a model directory (no config.json there)")


def _model_config(value: dict[str, Any]) -> None:
    from voicelib.model.config import ModelConfig

    ModelConfig.from_dict(value)


def _augment_config(value: dict[str, Any]) -> None:
    from voicelib.audio.augment import AugmentConfig

    AugmentConfig.from_dict(value)


def _folds(value: int) -> None:
    if value == 1:
        raise ValueError("crossfit_folds=1 leaves nothing out; use 0 (the refit) or 2 or more folds")


def _scheduler(value: str) -> None:
    if value and not value.startswith(("tcp://", "tls://")):
        raise ValueError(f"{value!r} is not a scheduler address; give tcp://HOST:PORT (as `dask scheduler` prints it)")


def _folders(value: list[str]) -> None:
    missing = [v for v in value if not Path(v).is_dir()]
    if missing:
        raise ValueError(f"no such folder {missing[0]!r}; --data-dir takes folders laid out as <dir>/<language>/human/")


def _rules() -> dict[str, Rule]:
    """What each parameter's value must be, beyond the type its notebook declares."""
    from voicelib.data.collect import HUMAN_SOURCES, TTS_ENGINES, VOCODERS

    return {
        "language": Rule(choices=tuple(LANGUAGES)), "languages": Rule(choices=(*LANGUAGES, "all")),
        "run_dir": Rule(path=True), "seed": Rule(0, 2**31 - 1),
        "data_root": Rule(path=True), "models_root": Rule(path=True), "local_dirs": Rule(path=True, check=_folders),
        "human_sources": Rule(choices=HUMAN_SOURCES), "tts_engines": Rule(choices=("auto", *TTS_ENGINES, *VOCODERS)),
        "vocoders_per_clip": Rule(0, 5), "max_minutes_per_engine": Rule(0.1, 10_000),
        "max_minutes_per_family": Rule(0.1, 10_000), "workers": Rule(0, 256),
        "dask_scheduler": Rule(check=_scheduler), "nproc_per_node": Rule(1, 64),
        "limit": Rule(1, 10**7), "val_fraction": Rule(0.01, 0.8), "test_fraction": Rule(0.01, 0.8),
        "test_families": Rule(), "val_families": Rule(),
        "augmentation": Rule(check=_augment_config), "augment_examples": Rule(1, 100),
        "training": Rule(check=_train_config), "architecture": Rule(check=_model_config),
        "device": Rule(choices=("auto", "cpu", "cuda")), "resume_training": Rule(), "promote": Rule(),
        "bootstrap": Rule(10, 100_000), "robustness": Rule(), "baselines": Rule(), "gmm_components": Rule(1, 1024),
        "leave_one_family_out": Rule(), "lofo_training": Rule(check=_train_config), "final_fit": Rule(),
        "crossfit_folds": Rule(0, 10, check=_folds),
    }


RULES = _rules()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--language", nargs="+", choices=[*LANGUAGES, "all"], metavar="LANGUAGE",
                   help="language to train a detector for; several (or all) train one multilingual detector")
    p.add_argument("--data-dir", nargs="+", metavar="DIR",
                   help="local recordings in the <DIR>/<language>/{human,ai}/* layout (e.g. ../shared/speech)")
    p.add_argument("--tts", nargs="+", metavar="ENGINE", help="AI speech engines (python -m voicelib engines)")
    p.add_argument("--human", nargs="+", metavar="SOURCE", help="online human speech sources (default: fleurs)")
    p.add_argument("--limit", type=int, help="clips per class and source to collect")
    p.add_argument("--base-model", help="model directory to fine-tune from (implies --mode full)")
    p.add_argument("--mode", choices=["scratch", "head", "frozen", "full"], help="what to train")
    p.add_argument("--epochs", type=int, help="passes over the training set")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where to train and evaluate")
    p.add_argument("--seed", type=int, help="seed for splits, augmentation and training")
    p.add_argument("--workers", type=int, help="local synthesis worker processes (0: one per CPU core)")
    p.add_argument("--dask-scheduler", metavar="tcp://HOST:PORT",
                   help="synthesise on this Dask cluster (the data root must be on storage every worker mounts)")
    p.add_argument("--nproc-per-node", type=int, metavar="N",
                   help="train with N DDP processes on this machine through torchrun (one per GPU)")
    p.add_argument("--config", metavar="YAML", help="YAML mapping of parameter: value")
    p.add_argument("--set", action="extend", nargs="+", default=[], metavar="NAME=VALUE",
                   help="set any notebook parameter, or one field of a dict one: --set training.lr=0.0005")
    p.add_argument("--smoke", action="store_true", help=f"the quick end-to-end check of {SMOKE.relative_to(ROOT)}")
    p.add_argument("--run-dir", help="run directory (an existing one is resumed)")
    p.add_argument("--resume", action="store_true", help="resume the newest run of --language")
    p.add_argument("--reports-dir", default="reports", help="where runs go: <reports-dir>/<language>/<run-id>/")
    p.add_argument("--stages", nargs="+", metavar="STAGE", help="run only these stages (01, finetune, ...)")
    p.add_argument("--from", dest="start", metavar="STAGE", help="run from this stage on, redoing finished ones")
    p.add_argument("--quiet", action="store_true", help="print one line per stage, not the notebooks' log lines")
    p.add_argument("--list-params", action="store_true", help="list the notebooks' parameters and exit")
    p.add_argument("--notebooks-dir", default=str(NOTEBOOKS), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def command_line_values(args: argparse.Namespace) -> dict[str, Any]:
    """The parameters the flags set (dotted names become dict fields), then --set."""
    values: dict[str, Any] = {}
    for flag, target in FLAGS.items():
        value = getattr(args, flag)
        if value is None:
            continue
        if flag == "base_model":
            value = str(Path(value).resolve())
        name, _, field = target.partition(".")
        if field:
            values.setdefault(name, {})[field] = value
        else:
            values[name] = value
    if args.base_model and not args.mode:
        values["training"]["mode"] = "full"  # a base model means fine-tuning; --mode frozen/head narrows it
    for name, value in parse_set(args.set).items():
        values[name] = {**values[name], **value} if isinstance(value, dict) and name in values else value
    return values


def stored_parameters(run_dir: Path) -> dict[str, Any]:
    """The parameters an existing run was started with (none for a new run)."""
    path = run_dir / "params.json"
    return read_json(path).get("parameters", {}) if path.is_file() else {}


def list_params(known: dict) -> None:
    """Print every parameter: name, type, default, help and the stages taking it."""
    for p in known.values():
        print(f"{p.name:18} {p.type_name:6} {p.default!r:32} {p.help}  [{', '.join(s[:2] for s in p.stages)}]")
    from voicelib.training.config import TrainConfig

    print("\ntraining fields (TrainConfig defaults; set with --set training.NAME=VALUE):")
    for name, value in TrainConfig().to_dict().items():
        print(f"  {name:18} {value!r}")


def split_languages(names: list[str] | None) -> tuple[str | None, list[str]]:
    """--language values -> (the run's first language, every language of a multilingual run or [])."""
    if not names:
        return None, []
    if "all" in names:
        return LANGUAGE_NAMES[0], ["all"]
    unique = list(dict.fromkeys(names))
    return unique[0], (unique if len(unique) > 1 else [])


def runs_folder(language: str, languages: list[str]) -> str:
    """reports/<language>/ for one language, reports/multilingual/ for several."""
    return "multilingual" if languages else language


def check_together(params: dict[str, Any]) -> None:
    """Checks that need two parameters at once, before any stage runs."""
    held_out = params.get("val_fraction", 0.0) + params.get("test_fraction", 0.0)
    if held_out >= 0.9:
        raise ValueError(f"val_fraction + test_fraction = {held_out:g} leaves {1 - held_out:.0%} of the audio to "
                         "train on; keep their sum below 0.9 (defaults 0.15 + 0.2)")


def main(argv: list[str] | None = None) -> int:
    """Run the pipeline; return the exit status (1 names the failed stage and cell, 2 a bad parameter)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    notebooks = Path(args.notebooks_dir).resolve()
    try:
        known = collect_parameters([notebooks / f"{s}.ipynb" for s in STAGES])
        if args.list_params:
            list_params(known)
            return 0
        reports = Path(args.reports_dir).resolve()
        run_dir = Path(args.run_dir).resolve() if args.run_dir else None
        language, languages = split_languages(args.language)
        if args.resume and not run_dir:
            if not language:
                raise ValueError("--resume needs --language to find the newest run")
            run_dir = runner.latest_run(reports / runs_folder(language, languages))
        stored = stored_parameters(run_dir) if run_dir else {}
        dropped = sorted(set(stored) - set(known))
        if dropped:
            print(f"note: ignoring stored parameters no stage takes any more: {', '.join(dropped)}")
        language = language or stored.get("language")
        if not language:
            raise ValueError("--language is required (english, hindi, tamil, malayalam, telugu)")
        if stored and stored.get("language", language) != language:
            raise ValueError(f"{run_dir}: that run is for {stored['language']}, not {language}; drop --language")
        layers = [("stored parameters of the run", {k: v for k, v in stored.items() if k in known})]
        if args.smoke:
            layers.append((f"--smoke ({SMOKE.name})", load_config(SMOKE)))
        if args.config:
            layers.append((f"--config {args.config}", load_config(args.config)))
        if stored and "resume_training" in known:  # continuing a run: training goes on from its last epoch
            layers.append(("resuming this run", {"resume_training": True}))
        layers.append(("command line", {**command_line_values(args), "language": language,
                                        **({"languages": languages} if languages else {})}))
        params = resolve(known, RULES, layers, cwd=Path.cwd(), defaults_base=notebooks)  # every check, up front
        check_together(params)
        run_id = runner.new_run_id(params)
        run_path = run_dir or reports / runs_folder(params["language"], params.get("languages") or []) / run_id
        params["run_dir"] = str(run_path)
        runner.init_run(run_path, STAGES, params, run_id=run_id, repo=ROOT)
        selected = runner.select_stages(STAGES, runner.read_stages(run_path), only=args.stages, start=args.start)
        names = ", ".join(params.get("languages") or [language])
        print(f"run {run_path.name}: {names}, stages {', '.join(selected) or 'none left'} in {run_path}")
        per_stage = {s: {k: v for k, v in params.items() if s in known[k].stages} for s in STAGES}
        runner.run_stages(STAGES, selected, per_stage, run_path, notebook_dir=notebooks,
                          echo_to=None if args.quiet else sys.stdout, extra_path=ROOT)
    except runner.StageFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(f"see {exc.run_dir}/{exc.stage}.html; fix the cause, then continue from this stage with: "
              f"python run_pipeline.py --run-dir {exc.run_dir}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun with --resume to continue", file=sys.stderr)
        return 130
    if all(runner.read_stages(run_path).get(s, {}).get("status") == "done" for s in STAGES):
        runner.write_latest(run_path)
        print(f"report: {run_path / 'index.html'}")
    print(f"finished: {run_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
