"""Command line: `python -m voicelib detect PATH... --model DIR`, `models list|promote|rollback`, `engines`, `serve`.

Exit codes: 0 every file scored, 1 some file could not be scored (its entry says why), 2 usage or model error.
"""
from __future__ import annotations

import argparse
import csv
import importlib
import io
import json
import logging
import sys
from pathlib import Path
from typing import Sequence

from voicelib.data.sources import engines
from voicelib.errors import VoiceLibError
from voicelib.evaluation import recalibrate
from voicelib.model import store
from voicelib.scoring.detector import Detector
from voicelib.scoring.fusion import ensemble
from voicelib.scoring.load import load_detector
from voicelib.scoring.paths import detect_paths

log = logging.getLogger("voicelib")

CSV_COLUMNS = ["file", "aiScore", "classification", "confidence", "threshold", "multiSpeakerScore", "topLanguage",
               "duration", "nChunks", "skippedChunks", "maxChunkScore", "minChunkScore", "topFamily", "error"]

MAX_CHUNK = 60.0  # seconds: longer windows cost memory linearly and the model never trained on them


class _Parser(argparse.ArgumentParser):
    """argparse that exits with code 2 and a single line on usage errors."""

    def error(self, message: str) -> None:  # noqa: D102 - argparse hook
        sys.stderr.write(f"voicelib: error: {message} (see --help)\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = _Parser(prog="python -m voicelib", description="Detect AI-generated speech; manage trained models.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    det = sub.add_parser("detect", help="score audio files, directories or glob patterns")
    det.add_argument("paths", nargs="+", metavar="PATH", help="audio files, directories (recursive) or globs")
    which = det.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", action="append", help="model directory (model.safetensors + config.json, or a "
                       "fused/ensemble directory); repeat it to score with the ensemble of those models")
    which.add_argument("--language", help="use the current model of this language in the model store")
    det.add_argument("--models-root", default="models", help="model store folder (default: models)")
    det.add_argument("--format", choices=["json", "csv"], default="json", help="output format on stdout")
    det.add_argument("--chunk-duration", type=float, default=None,
                     help=f"window length in seconds, up to {MAX_CHUNK:g} (default: the model's training segment)")
    det.add_argument("--overlap", type=float, default=0.5, help="window overlap fraction in [0, 1) (default 0.5)")
    det.add_argument("--band", type=float, default=None,
                     help="inconclusive half-width around the threshold (default: the model's, sized on validation)")
    det.add_argument("--max-duration", type=float, default=None, metavar="SECONDS",
                     help="refuse files longer than this (default: any length; long files are streamed)")
    det.add_argument("--device", default="cpu", help="cpu or cuda")
    det.add_argument("--backend", choices=["auto", "torch", "onnx"], default="auto",
                     help="network runtime (auto: onnxruntime on CPU when installed)")
    srv = sub.add_parser("serve", help="HTTP detection service with each language's current model")
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    srv.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    srv.add_argument("--models-root", default="models", help="model store folder (default: models)")
    srv.add_argument("--api-key-file", help="file with one API key a line (added to $VOICELIB_API_KEYS)")
    srv.add_argument("--workers", type=int, default=2, help="scoring threads (default 2)")
    srv.add_argument("--queue-limit", type=int, default=8, help="requests that may wait for a thread; more get 503")
    srv.add_argument("--max-duration", type=float, default=1800.0, help="seconds of audio per request (default 1800)")
    srv.add_argument("--max-body-mb", type=float, default=64.0, help="request body limit in MB (default 64)")
    srv.add_argument("--backend", choices=["auto", "torch", "onnx"], default="auto", help="network runtime")
    models = sub.add_parser("models", help="list, promote or roll back stored models")
    models.add_argument("action", choices=["list", "promote", "rollback"])
    models.add_argument("--language", required=True, help="language whose models to manage")
    models.add_argument("--models-root", default="models", help="model store folder (default: models)")
    models.add_argument("--entry", help="version (folder name from `models list`) to promote")
    cal = sub.add_parser("calibrate", help="fit a model's threshold on your own labelled recordings (a new version)")
    cal.add_argument("--model", required=True, help="model directory (or store entry) to calibrate")
    cal.add_argument("--human", required=True, metavar="DIR", help="your human recordings, one sub-folder per speaker")
    cal.add_argument("--ai", metavar="DIR", help="AI recordings of your channel: measures the missed-AI cost")
    cal.add_argument("--target-fpr", type=float, default=0.05,
                     help="share of your human recordings to call AI (default 0.05)")
    cal.add_argument("--language", help="store language (default: the model's)")
    cal.add_argument("--models-root", default="models", help="model store folder (default: models)")
    eng = sub.add_parser("engines", help="list the AI speech engines, their family, languages and availability")
    eng.add_argument("--language", help="say whether each engine can speak this language here")
    eng.add_argument("--format", choices=["table", "json"], default="table", help="output format on stdout")
    return parser


def _csv_row(result: dict) -> dict:
    """Flatten one result to a CSV row, summarising its chunks."""
    if "error" in result:
        return {"file": result["file"], "error": result["error"]}
    scores = [c["score"] for c in result["chunks"] if c.get("score") is not None]
    langs = result["languageDistribution"] or {}
    families = result.get("familyDistribution") or {}
    row = {k: result[k] for k in ("file", "aiScore", "classification", "confidence", "threshold",
                                  "multiSpeakerScore", "duration", "skippedChunks")}
    row.update(topLanguage=max(langs, key=langs.get) if langs else "", nChunks=len(result["chunks"]),
               maxChunkScore=max(scores), minChunkScore=min(scores),
               topFamily=max(families, key=families.get) if families else "", error="")
    return row


def format_results(results: Sequence[dict], fmt: str) -> str:
    """Render results as a JSON list or as CSV text (one row per file)."""
    if fmt == "json":
        return json.dumps(list(results), indent=2, ensure_ascii=False) + "\n"
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for result in results:
        writer.writerow(_csv_row(result))
    return buffer.getvalue()


def _detect(args: argparse.Namespace) -> int:
    if args.chunk_duration is not None and not 0 < args.chunk_duration <= MAX_CHUNK or not 0.0 <= args.overlap < 1.0:
        raise ValueError(f"--chunk-duration must be in (0, {MAX_CHUNK:g}] seconds and --overlap in [0, 1)")
    if args.max_duration is not None and args.max_duration <= 0:
        raise ValueError("--max-duration must be a positive number of seconds (leave it out for any length)")
    if args.model and len(args.model) > 1:
        detector = ensemble(args.model, device=args.device, band=args.band, backend=args.backend,
                            max_duration=args.max_duration)
    else:
        detector = load_detector(args.model[0] if args.model else None, language=args.language,
                                 models_root=args.models_root, device=args.device, band=args.band,
                                 backend=args.backend, max_duration=args.max_duration)
    chunk = args.chunk_duration or detector.segment_seconds
    results, n_failed = detect_paths(args.paths, detector, chunk_duration=chunk, overlap=args.overlap)
    sys.stdout.write(format_results(results, args.format))
    for r in results:
        if "error" in r:
            log.warning("%s: %s", r["file"], r["error"])
    return 1 if n_failed or not results else 0


def _models(args: argparse.Namespace) -> int:
    if args.action == "list":
        current = None
        try:
            current = store.current(args.language, root=args.models_root).name
        except VoiceLibError:
            pass
        rows = [{"version": v, "current": v == current} for v in store.list_models(args.models_root, args.language)]
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
    elif args.action == "promote":
        if not args.entry:
            raise ValueError("models promote needs --entry VERSION (a name printed by `models list`)")
        sys.stdout.write(f"{store.promote(args.models_root, args.language, Path(args.entry).name)}\n")
    else:
        sys.stdout.write(f"{store.rollback(args.models_root, args.language)}\n")
    return 0


def _engines(args: argparse.Namespace) -> int:
    rows = engines.listing(args.language)
    if args.format == "json":
        sys.stdout.write(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
        return 0
    lines = [f"{'engine':<14} {'family':<14} {'online':<7} {'available':<10} {'languages':<40} why not / note"]
    for r in rows:
        flag = ("yes" if r["available"] else "no") + ("" if r["default"] else "*")
        lines.append(f"{r['name']:<14} {r['family']:<14} {'yes' if r['network'] else 'no':<7} {flag:<10} "
                     f"{', '.join(r['languages']):<40} {r['reason'] or r['note']}")
    lines.append("* available but not used by default (pass its name to use it)")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    detector = load_detector(args.model)
    if not isinstance(detector, Detector):
        raise ValueError(f"{args.model}: calibrate works on a plain model directory, not a fused one or an ensemble")
    options = {"chunk_duration": detector.segment_seconds, "overlap": 0.5}
    human = recalibrate.score_folder(detector, args.human, **options)
    recalibrate.check_enough(human, args.human)
    ai = recalibrate.score_folder(detector, args.ai, **options) if args.ai else None
    point = recalibrate.operating_point(human, ai, target_fpr=args.target_fpr, meta=detector.meta)
    entry = recalibrate.write_version(args.model, point, models_root=args.models_root, language=args.language)
    sys.stdout.write(json.dumps({"version": str(entry), **point}, indent=2) + "\n")
    return 0


def _serve(args: argparse.Namespace) -> int:
    # The HTTP stack (FastAPI, uvicorn, the service) loads only for this command, by name: `detect` must start fast.
    return importlib.import_module("voicelib.serve.app").serve_command(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        commands = {"detect": _detect, "serve": _serve, "models": _models, "engines": _engines, "calibrate": _calibrate}
        return commands[args.command](args)
    except (VoiceLibError, ValueError, FileNotFoundError) as exc:
        sys.stderr.write(f"voicelib: error: {' '.join(str(exc).split())}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
