#!/usr/bin/env python
"""Run the five stage notebooks for one language: collect, augment, fine-tune, evaluate, report.

    python run_pipeline.py --language hindi --data-dir ../shared/speech
    python run_pipeline.py --language hindi --smoke --data-dir ../shared/speech   # minutes on CPU
    python run_pipeline.py --resume --language hindi                               # finish the newest run

Each notebook is executed with papermill into reports/<language>/<run-id>/ and rendered to HTML there;
the report is index.html. Parameters: notebook defaults < --smoke < --config YAML < command line.
`--list-params` shows every parameter the notebooks take; `--set name=value` sets any of them.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from voicelib import pipeline
from voicelib.languages import LANGUAGES

STAGES = ["01_collect_data", "02_augment", "03_finetune", "04_evaluate", "05_report"]

# command-line flag -> notebook parameter
FLAGS = {"data_dir": "local_dirs", "tts": "tts_engines", "human": "human_sources", "base_model": "base_model",
         "epochs": "epochs", "device": "device", "seed": "seed", "limit": "limit", "mode": "mode"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--language", choices=list(LANGUAGES), help="language to train a detector for")
    p.add_argument("--data-dir", nargs="+", metavar="DIR",
                   help="local recordings in the <DIR>/<language>/{human,ai}/* layout (e.g. ../shared/speech)")
    p.add_argument("--tts", nargs="+", metavar="ENGINE", help="AI speech engines: gtts edge espeak")
    p.add_argument("--human", nargs="+", metavar="SOURCE", help="online human speech sources (default: fleurs)")
    p.add_argument("--limit", type=int, help="clips per class and source to collect")
    p.add_argument("--base-model", help="model directory to fine-tune from")
    p.add_argument("--mode", choices=["scratch", "head", "frozen", "full"], help="what to train")
    p.add_argument("--epochs", type=int, help="passes over the training set")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where to train and evaluate")
    p.add_argument("--seed", type=int, help="seed for splits, augmentation and training")
    p.add_argument("--config", metavar="YAML", help="YAML mapping of parameter: value")
    p.add_argument("--set", action="extend", nargs="+", default=[], metavar="NAME=VALUE", help="set any notebook parameter")
    p.add_argument("--smoke", action="store_true", help="tiny data, one epoch, tiny model: a quick end-to-end check")
    p.add_argument("--run-dir", help="run directory (an existing one is resumed)")
    p.add_argument("--resume", action="store_true", help="resume the newest run of --language")
    p.add_argument("--reports-dir", default="reports", help="where runs go: <reports-dir>/<language>/<run-id>/")
    p.add_argument("--stages", nargs="+", metavar="STAGE", help="run only these stages (01, finetune, ...)")
    p.add_argument("--from", dest="start", metavar="STAGE", help="run from this stage on, redoing finished ones")
    p.add_argument("--log-output", action="store_true", help="stream the notebooks' output to the terminal")
    p.add_argument("--list-params", action="store_true", help="list the notebooks' parameters and exit")
    p.add_argument("--notebooks-dir", default=str(pipeline.NOTEBOOK_DIR), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the pipeline; return the exit status (non-zero names the failed stage and cell)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    notebooks = Path(args.notebooks_dir)
    if args.list_params:
        for p in pipeline.collect_parameters([notebooks / f"{s}.ipynb" for s in STAGES]).values():
            print(f"{p.name:18} {p.type_name:10} {p.default!r:28} {p.help}  [{', '.join(p.stages)}]")
        return 0
    try:
        cli = {FLAGS[k]: v for k, v in vars(args).items() if k in FLAGS and v is not None}
        if args.base_model and not args.mode:
            cli["mode"] = "full"  # a base model means fine-tuning; --mode frozen/head narrows it
        cli.update(pipeline.parse_set(args.set))
        run_dir = pipeline.run(STAGES, language=args.language, cli=cli, config=args.config, smoke=args.smoke,
                               run_dir=args.run_dir, reports_dir=args.reports_dir, resume=args.resume,
                               only=args.stages, start=args.start, notebook_dir=notebooks,
                               log_output=args.log_output)
    except pipeline.StageFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(f"see {exc.run_dir}/{exc.stage}.html; fix the cause, then continue from this stage with: "
              f"python run_pipeline.py --run-dir {exc.run_dir}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun with --resume to continue", file=sys.stderr)
        return 130
    print(f"finished: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
