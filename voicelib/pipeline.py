"""Run the stage notebooks with papermill: parameters, run-directory bookkeeping, resume, HTML rendering."""
from __future__ import annotations

import ast
import contextlib
import difflib
import hashlib
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

from voicelib.io import atomic_write, read_json, write_json

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
PATH_SUFFIXES = ("_dir", "_dirs", "_root", "_path")  # parameters holding paths, resolved to absolute ones
TYPES = {"str": str, "int": int, "float": (int, float), "bool": bool, "list": list, "dict": dict}
VERSIONED = ("numpy", "torch", "librosa", "soundfile", "pandas", "scikit-learn", "papermill", "nbconvert")


@dataclass(frozen=True)
class Param:
    """One notebook parameter: its name, declared type, default value, help text and the stages taking it."""

    name: str
    type_name: str
    default: Any
    help: str
    stages: tuple[str, ...]


class StageFailed(RuntimeError):
    """A stage notebook raised; the message names the stage, the cell and the error."""

    def __init__(self, stage: str, message: str, *, cell: int | None = None):
        self.stage, self.cell, self.run_dir = stage, cell, None
        super().__init__(message)


# ---------------------------------------------------------------- parameters


def notebook_parameters(notebook: str | os.PathLike) -> dict[str, Param]:
    """Return the parameters declared in a notebook's cell tagged `parameters` (via papermill)."""
    import papermill

    notebook = Path(notebook)
    if not notebook.is_file():
        raise FileNotFoundError(f"{notebook}: stage notebook not found; check --notebooks-dir")
    found = papermill.inspect_notebook(str(notebook))
    stage = notebook.stem
    return {name: Param(name, p["inferred_type_name"], _literal(p["default"], name, notebook),
                        p["help"], (stage,)) for name, p in found.items()}


def _literal(text: str, name: str, notebook: Path) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError) as exc:
        raise ValueError(f"{notebook.name}: parameter {name!r} default {text!r} is not a literal; "
                         "write plain values in the parameters cell") from exc


def collect_parameters(notebooks: list[Path]) -> dict[str, Param]:
    """Return the union of the notebooks' parameters, remembering which stages take each one."""
    known: dict[str, Param] = {}
    for notebook in notebooks:
        for name, param in notebook_parameters(notebook).items():
            if name in known:
                first = known[name]
                if first.default != param.default:
                    log.warning("parameter %s: default %r in %s differs from %r in %s; using the first",
                                name, param.default, param.stages[0], first.default, first.stages[0])
                param = Param(name, first.type_name, first.default, first.help or param.help,
                              first.stages + param.stages)
            known[name] = param
    return known


def check_names(names: Any, known: dict[str, Param], *, origin: str) -> None:
    """Refuse parameter names no stage declares, suggesting the closest known names."""
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
            hint = f"did you mean {' or '.join(close)}? " if close else ""
            raise ValueError(f"unknown parameter {name!r} ({origin}); {hint}"
                             f"known parameters: {', '.join(sorted(known))}")


def check_value(param: Param, value: Any) -> Any:
    """Check a value against the parameter's declared type (int accepted as float, a word as a list); return it."""
    if value is None and ("None" in param.type_name or param.default is None):
        return value
    names = [t.strip().split("[")[0] for t in param.type_name.replace("Optional[", "").split("|")]
    wanted = [TYPES[t] for t in names if t in TYPES]
    if wanted == [list] and isinstance(value, str):
        return [value]  # --set tts_engines=espeak
    ok = not wanted or any(isinstance(value, w) for w in wanted)
    if not ok or (isinstance(value, bool) and bool not in wanted and wanted):
        raise ValueError(f"parameter {param.name!r} must be {param.type_name}, got {value!r}")
    return float(value) if wanted == [(int, float)] else value


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML file of parameter values (a flat mapping of name: value)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file not found")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of parameter: value, got {type(data).__name__}")
    return data


def parse_set(items: list[str]) -> dict[str, Any]:
    """Parse `--set key=value` items; values are read as YAML (numbers, booleans, lists)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {item!r}: write it as name=value, e.g. --set epochs=3")
        out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
    return out


def resolve_parameters(known: dict[str, Param], layers: list[tuple[str, dict[str, Any]]], *,
                       notebook_dir: Path, cwd: Path | None = None) -> dict[str, Any]:
    """Merge defaults with (origin, values) layers, later layers winning; refuse unknown names and bad types."""
    cwd = Path(cwd or os.getcwd())
    params = {name: _absolute(name, p.default, notebook_dir) for name, p in known.items()}
    for origin, values in layers:
        check_names(values, known, origin=origin)
        for name, value in values.items():
            params[name] = _absolute(name, check_value(known[name], value), cwd)
    return params


def _absolute(name: str, value: Any, base: Path) -> Any:
    if not name.endswith(PATH_SUFFIXES) and name != "base_model":
        return value
    if isinstance(value, list):
        return [str((base / v).resolve()) if isinstance(v, str) and v else v for v in value]
    if isinstance(value, str) and value and (name != "base_model" or "/" in value or (base / value).exists()):
        return str((base / value).resolve())
    return value


# ---------------------------------------------------------------- run directory


def new_run_id(params: dict[str, Any], *, now: float | None = None) -> str:
    """Return `YYYYmmdd-HHMMSS-<6 hex of the parameters>`: sortable by time, distinct per parameter set."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    digest = hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:6]
    return f"{stamp}-{digest}"


def environment() -> dict[str, Any]:
    """Describe the machine and software a run used (no torch import)."""
    env = {"python": platform.python_version(), "platform": platform.platform(),
           "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
           "executable": sys.executable, "git_revision": git_revision()}
    for name in ("voicelib", *VERSIONED):
        with contextlib.suppress(metadata.PackageNotFoundError):
            env[name] = metadata.version(name)
    env.setdefault("voicelib", __import__("voicelib").__version__)
    return env


def git_revision() -> str:
    """Return the repository's commit (with `+dirty` when files changed), or 'unknown'."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return rev + ("+dirty" if dirty else "")


def read_stages(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Return the per-stage bookkeeping of a run (empty when the run has not started)."""
    path = Path(run_dir) / "stages.json"
    return read_json(path)["stages"] if path.is_file() else {}


def update_stage(run_dir: Path, stage: str, **fields: Any) -> None:
    """Set fields of one stage's entry in stages.json (atomic rewrite)."""
    stages = read_stages(run_dir)
    stages.setdefault(stage, {}).update(fields)
    write_json(Path(run_dir) / "stages.json", {"stages": stages})


def init_run(run_dir: Path, stages: list[str], params: dict[str, Any], *, run_id: str) -> None:
    """Create the run directory with params.json and stages.json (existing entries are kept)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    previous = read_json(run_dir / "params.json") if (run_dir / "params.json").is_file() else {}
    write_json(run_dir / "params.json", {"run_id": previous.get("run_id", run_id),
                                         "created": previous.get("created", time.strftime("%Y-%m-%dT%H:%M:%S")),
                                         "parameters": params, "environment": environment()})
    current = read_stages(run_dir)
    for stage in stages:
        current.setdefault(stage, {"status": "pending"})
    write_json(run_dir / "stages.json", {"stages": current})


def select_stages(stages: list[str], status: dict[str, dict], *, only: list[str] | None = None,
                  start: str | None = None) -> list[str]:
    """Pick the stages to run: `only`, or from `start` on, or every stage not yet done (resume)."""
    if only:
        return [s for s in stages if s in {match_stage(o, stages) for o in only}]
    if start:
        return stages[stages.index(match_stage(start, stages)):]
    return [s for s in stages if status.get(s, {}).get("status") != "done"]


def match_stage(name: str, stages: list[str]) -> str:
    """Resolve `03`, `finetune` or `03_finetune` to a stage name."""
    hits = [s for s in stages if name in (s, s[:2], s[3:])]
    if len(hits) != 1:
        raise ValueError(f"unknown stage {name!r}; choose one of {', '.join(stages)} (or their numbers)")
    return hits[0]


def latest_run(reports_dir: Path, language: str) -> Path:
    """Return the newest run directory of a language (finished or not), for --resume."""
    runs = sorted(p.parent for p in (Path(reports_dir) / language).glob("*/stages.json"))
    if not runs:
        raise FileNotFoundError(f"{Path(reports_dir) / language}: no run to resume; start one without --resume")
    return runs[-1]


def write_latest(run_dir: Path) -> Path:
    """Point reports/<language>/latest.json (and a latest.html redirect) at a finished run."""
    run_dir = Path(run_dir).resolve()
    pointer = run_dir.parent / "latest.json"
    write_json(pointer, {"run_id": run_dir.name, "run_dir": run_dir.name, "index": f"{run_dir.name}/index.html",
                         "finished": time.strftime("%Y-%m-%dT%H:%M:%S")})
    with atomic_write(run_dir.parent / "latest.html", "w", encoding="utf-8") as handle:
        handle.write(f'<!doctype html><meta http-equiv="refresh" content="0; url={run_dir.name}/index.html">'
                     f'<a href="{run_dir.name}/index.html">latest run: {run_dir.name}</a>\n')
    return pointer


# ---------------------------------------------------------------- execution


@contextlib.contextmanager
def kernel_for_this_python() -> Iterator[str]:
    """Make the `python3` kernel start this interpreter, with the repository importable."""
    with tempfile.TemporaryDirectory(prefix="voicelib-kernel-") as tmp:
        spec_dir = Path(tmp) / "kernels" / "python3"
        spec_dir.mkdir(parents=True)
        pythonpath = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
        spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}", "--log-level=ERROR"],
                "display_name": "Python 3 (voicelib)", "language": "python",
                "metadata": {"supported_encryption": ["curve"]},
                "env": {"PYTHONPATH": pythonpath, "MPLBACKEND": "module://matplotlib_inline.backend_inline"}}
        (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
        old = os.environ.get("JUPYTER_PATH")
        os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [tmp, old]))
        try:
            yield "python3"
        finally:
            if old is None:
                os.environ.pop("JUPYTER_PATH", None)
            else:
                os.environ["JUPYTER_PATH"] = old


def execute_stage(stage: str, notebook: Path, run_dir: Path, params: dict[str, Any], *,
                  log_output: bool = False, progress_bar: bool = False) -> None:
    """Execute one notebook into the run directory; raise StageFailed naming the cell on error."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    out = Path(run_dir) / f"{stage}.ipynb"
    try:
        with kernel_for_this_python() as kernel:
            papermill.execute_notebook(str(notebook), str(out), parameters=params, kernel_name=kernel,
                                       cwd=str(notebook.parent), progress_bar=progress_bar,
                                       log_output=log_output, stdout_file=None)
    except PapermillExecutionError as exc:
        source = next((line for line in exc.source.splitlines() if line.strip()), "")
        raise StageFailed(stage, f"stage {stage} failed at cell {exc.exec_count} ({source.strip()[:80]}): "
                                 f"{exc.ename}: {_first_line(exc.evalue)}", cell=exc.exec_count) from exc
    except Exception as exc:  # a kernel that died or could not start still fails the stage, by name
        raise StageFailed(stage, f"stage {stage} failed: {type(exc).__name__}: {_first_line(str(exc))}") from exc


def _first_line(text: str) -> str:
    return next((line for line in str(text).splitlines() if line.strip()), str(text)).strip()[:300]


def render_html(notebook: Path, html: Path | None = None) -> Path:
    """Render an executed notebook to self-contained HTML (images embedded) beside it."""
    import nbformat
    from nbconvert import HTMLExporter

    notebook = Path(notebook)
    html = Path(html or notebook.with_suffix(".html"))
    logging.getLogger("traitlets").setLevel(logging.ERROR)  # nbconvert's alt-text notes are noise here
    exporter = HTMLExporter(embed_images=True)
    body, _ = exporter.from_notebook_node(nbformat.read(notebook, as_version=4))
    with atomic_write(html, "w", encoding="utf-8") as handle:
        handle.write(body)
    return html


def run_stages(stages: list[str], selected: list[str], params: dict[str, Any], known: dict[str, Param],
               run_dir: Path, *, notebook_dir: Path = NOTEBOOK_DIR, log_output: bool = False,
               echo: Callable[[str], None] = print) -> None:
    """Run the selected stages in order, keeping stages.json and the HTML renderings up to date."""
    for stage in stages[stages.index(selected[0]) + 1:] if selected else []:
        if stage not in selected and read_stages(run_dir).get(stage, {}).get("status") == "done":
            update_stage(run_dir, stage, status="stale")  # an earlier stage reran: redo this one on resume
    for stage in selected:
        position = f"[{stages.index(stage) + 1}/{len(stages)}]"
        echo(f"{position} {stage} ...")
        own = {k: v for k, v in params.items() if stage in known[k].stages}
        update_stage(run_dir, stage, status="running", started=time.strftime("%Y-%m-%dT%H:%M:%S"),
                     error=None, failed_cell=None)
        start = time.perf_counter()
        try:
            execute_stage(stage, notebook_dir / f"{stage}.ipynb", run_dir, own, log_output=log_output,
                          progress_bar=sys.stderr.isatty() and not log_output)  # cells done, on a terminal
        except (StageFailed, KeyboardInterrupt) as exc:
            duration = time.perf_counter() - start
            message = str(exc) if isinstance(exc, StageFailed) else f"stage {stage} interrupted"
            update_stage(run_dir, stage, status="failed", duration_s=round(duration, 2), error=message,
                         failed_cell=getattr(exc, "cell", None))
            _render_quietly(run_dir / f"{stage}.ipynb", echo)
            echo(f"{position} {stage} FAILED after {duration:.1f} s")
            if isinstance(exc, StageFailed):
                exc.run_dir = run_dir
            raise
        duration = time.perf_counter() - start
        update_stage(run_dir, stage, status="done", duration_s=round(duration, 2))
        _render_quietly(run_dir / f"{stage}.ipynb", echo)
        echo(f"{position} {stage} done in {duration:.1f} s -> {run_dir / (stage + '.html')}")


def _render_quietly(notebook: Path, echo: Callable[[str], None]) -> None:
    if not notebook.is_file():
        echo(f"  (no executed notebook to render: {notebook.name})")
        return
    try:
        render_html(notebook)
    except Exception as exc:  # a rendering problem must not hide the stage's own result
        echo(f"  could not render {notebook.name} to HTML: {type(exc).__name__}: {exc}")


# ---------------------------------------------------------------- the whole run

SMOKE = {"limit": 16, "epochs": 1, "width": 8, "batch_size": 8, "augment_examples": 2, "promote": False,
         "bootstrap": 50, "robustness": False, "segment_seconds": 2.0, "gmm_components": 4}  # finishes in minutes on CPU


def run(stages: list[str], *, language: str | None, cli: dict[str, Any], config: str | None = None,
        smoke: bool = False, run_dir: str | None = None, reports_dir: str = "reports", resume: bool = False,
        only: list[str] | None = None, start: str | None = None, notebook_dir: Path = NOTEBOOK_DIR,
        log_output: bool = False, echo: Callable[[str], None] = print) -> Path:
    """Resolve parameters, create or reopen the run directory, run the stages; return the run directory."""
    notebook_dir = Path(notebook_dir)
    known = collect_parameters([notebook_dir / f"{s}.ipynb" for s in stages])
    reports = Path(reports_dir).resolve()
    if resume and not run_dir:
        if not language:
            raise ValueError("--resume needs --language to find the newest run")
        run_dir = str(latest_run(reports, language))
    stored = _stored_parameters(Path(run_dir), known, echo) if run_dir else {}
    layers = [("stored parameters of the run", stored)] if stored else []
    if smoke:
        layers.append(("--smoke preset", {k: v for k, v in SMOKE.items() if k in known}))
    if config:
        layers.append((f"--config {config}", load_config(config)))
    language = language or stored.get("language")
    if not language:
        raise ValueError("--language is required (english, hindi, tamil, malayalam, telugu)")
    layers.append(("command line", {**cli, "language": language} if "language" in known else cli))
    params = resolve_parameters(known, layers, notebook_dir=notebook_dir)
    if stored.get("language", language) != params.get("language", language):
        raise ValueError(f"{run_dir}: that run is for {stored['language']}, not {language}; drop --language")
    run_id = new_run_id(params)
    run_path = Path(run_dir).resolve() if run_dir else reports / language / run_id
    params["run_dir"] = str(run_path)
    init_run(run_path, stages, params, run_id=run_id)
    selected = select_stages(stages, read_stages(run_path), only=only, start=start)
    echo(f"run {run_path.name}: {language}, stages {', '.join(selected) or 'none left'} in {run_path}")
    run_stages(stages, selected, params, known, run_path, notebook_dir=notebook_dir,
               log_output=log_output, echo=echo)
    if all(read_stages(run_path).get(s, {}).get("status") == "done" for s in stages):
        write_latest(run_path)
        echo(f"report: {run_path / 'index.html'}")
    return run_path


def _stored_parameters(run_dir: Path, known: dict[str, Param], echo: Callable[[str], None]) -> dict[str, Any]:
    path = run_dir / "params.json"
    if not path.is_file():
        return {}
    stored = read_json(path).get("parameters", {})
    dropped = sorted(set(stored) - set(known) - {"run_dir"})
    if dropped:
        echo(f"note: ignoring stored parameters no stage takes any more: {', '.join(dropped)}")
    return {k: v for k, v in stored.items() if k in known and k != "run_dir"}
