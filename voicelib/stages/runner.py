"""A small generic notebook runner: execute a notebook with papermill, keep stages.json, render HTML, resume.

It knows nothing about this project's stages: the caller (run_pipeline.py) gives the stage list, the
notebooks folder and the parameters. Cell output printed to stdout (the notebooks log there) is echoed
to the terminal while a stage runs, and stays in the stage's HTML.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

from voicelib.files import RunDir, atomic_write, read_json, write_json

log = logging.getLogger(__name__)

VERSIONED = ("numpy", "torch", "librosa", "soundfile", "pandas", "scikit-learn", "papermill", "nbconvert")


class StageFailed(RuntimeError):
    """A stage notebook raised, or its kernel died; the message names the stage, the cell and the error."""

    def __init__(self, stage: str, message: str, *, cell: int | None = None, run_dir: Path | None = None):
        self.stage, self.cell, self.run_dir = stage, cell, run_dir
        super().__init__(message)


# ---------------------------------------------------------------- the run directory


def new_run_id(params: dict[str, Any], *, now: float | None = None) -> str:
    """Return `YYYYmmdd-HHMMSS-<6 hex of the parameters>`: sortable by time, distinct per parameter set."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    digest = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:6]
    return f"{stamp}-{digest}"


def environment(repo: Path | None = None) -> dict[str, Any]:
    """Describe the machine and software a run used (no torch import)."""
    env = {"python": platform.python_version(), "platform": platform.platform(),
           "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
           "executable": sys.executable, "git_revision": git_revision(repo) if repo else "unknown"}
    for name in ("voicelib", *VERSIONED):
        with contextlib.suppress(metadata.PackageNotFoundError):
            env[name] = metadata.version(name)
    env.setdefault("voicelib", __import__("voicelib").__version__)
    return env


def git_revision(repo: Path) -> str:
    """Return the repository's commit (with `+dirty` when tracked files changed), or 'unknown'."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=repo, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return rev + ("+dirty" if dirty else "")


def read_stages(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Return the per-stage bookkeeping of a run (empty when the run has not started)."""
    path = RunDir(run_dir).stages
    return read_json(path)["stages"] if path.is_file() else {}


def update_stage(run_dir: Path, stage: str, **fields: Any) -> None:
    """Set fields of one stage's entry in stages.json (atomic rewrite)."""
    stages = read_stages(run_dir)
    stages.setdefault(stage, {}).update(fields)
    write_json(RunDir(run_dir).stages, {"stages": stages})


def init_run(run_dir: Path, stages: list[str], params: dict[str, Any], *, run_id: str,
             repo: Path | None = None) -> None:
    """Create the run directory with params.json and stages.json (existing entries are kept, in stage order)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    previous = RunDir(run_dir).read(RunDir(run_dir).params)
    write_json(RunDir(run_dir).params, {"run_id": previous.get("run_id", run_id),
                                         "created": previous.get("created", time.strftime("%Y-%m-%dT%H:%M:%S")),
                                         "parameters": params, "environment": environment(repo)})
    current = read_stages(run_dir)
    write_json(RunDir(run_dir).stages, {"stages": {s: current.get(s, {"status": "pending"}) for s in stages}})


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


def latest_run(runs_dir: Path) -> Path:
    """Return the newest run directory under `runs_dir` (finished or not), for --resume."""
    runs = sorted(p.parent for p in Path(runs_dir).glob(f"*/{RunDir(runs_dir).stages.name}"))
    if not runs:
        raise FileNotFoundError(f"{runs_dir}: no run to resume; start one without --resume")
    return runs[-1]


def write_latest(run_dir: Path) -> Path:
    """Point <run_dir>/../latest.json (and a latest.html redirect) at a finished run."""
    run_dir = Path(run_dir).resolve()
    pointer = RunDir.latest(run_dir.parent)
    index = RunDir(run_dir).index.relative_to(run_dir.parent).as_posix()
    write_json(pointer, {"run_id": run_dir.name, "run_dir": run_dir.name, "index": index,
                         "finished": time.strftime("%Y-%m-%dT%H:%M:%S")})
    with atomic_write(pointer.with_suffix(".html"), "w", encoding="utf-8") as handle:
        handle.write(f'<!doctype html><meta http-equiv="refresh" content="0; url={index}">'
                     f'<a href="{index}">latest run: {run_dir.name}</a>\n')
    return pointer


# ---------------------------------------------------------------- execution


@contextlib.contextmanager
def kernel_for_this_python(extra_path: Path | None = None) -> Iterator[str]:
    """Make the `python3` kernel start this interpreter (with `extra_path` importable, e.g. a checkout)."""
    with tempfile.TemporaryDirectory(prefix="voicelib-kernel-") as tmp:
        spec_dir = Path(tmp) / "kernels" / "python3"
        spec_dir.mkdir(parents=True)
        pythonpath = os.pathsep.join(filter(None, [str(extra_path or ""), os.environ.get("PYTHONPATH", "")]))
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


class _Indented:
    """A text stream that writes each line of cell output to `target`, indented under the stage's line."""

    def __init__(self, target: TextIO, prefix: str = "    "):
        self.target, self.prefix, self._start = target, prefix, True

    def write(self, text: str) -> int:
        for piece in text.splitlines(keepends=True):
            self.target.write((self.prefix if self._start else "") + piece)
            self._start = piece.endswith("\n")
        self.target.flush()
        return len(text)

    def flush(self) -> None:
        self.target.flush()


def execute_stage(stage: str, notebook: Path, out: Path, params: dict[str, Any], *, cwd: Path,
                  echo_to: TextIO | None = None, extra_path: Path | None = None) -> None:
    """Execute one notebook into `out`; raise StageFailed naming the cell when a cell raises or the kernel dies."""
    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    try:
        with kernel_for_this_python(extra_path) as kernel:
            papermill.execute_notebook(str(notebook), str(out), parameters=params, kernel_name=kernel, cwd=str(cwd),
                                       progress_bar=False, log_output=False,
                                       stdout_file=_Indented(echo_to) if echo_to else None)
    except PapermillExecutionError as exc:
        source = next((line for line in exc.source.splitlines() if line.strip()), "")
        raise StageFailed(stage, f"stage {stage} failed at cell {exc.exec_count} ({source.strip()[:80]}): "
                                 f"{exc.ename}: {_first_line(exc.evalue)}", cell=exc.exec_count) from exc
    except (DeadKernelError, CellTimeoutError) as exc:  # the kernel died (out of memory?) or a cell hung
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
    body, _ = HTMLExporter(embed_images=True).from_notebook_node(nbformat.read(notebook, as_version=4))
    with atomic_write(html, "w", encoding="utf-8") as handle:
        handle.write(body)
    return html


def run_stages(stages: list[str], selected: list[str], params: dict[str, dict[str, Any]], run_dir: Path, *,
               notebook_dir: Path, echo: Callable[[str], None] = print, echo_to: TextIO | None = sys.stdout,
               extra_path: Path | None = None) -> None:
    """Run the selected stages in order (params: stage -> its parameters), keeping stages.json and the HTML."""
    for stage in stages[stages.index(selected[0]) + 1:] if selected else []:
        if stage not in selected and read_stages(run_dir).get(stage, {}).get("status") == "done":
            update_stage(run_dir, stage, status="stale")  # an earlier stage reran: redo this one on resume
    for stage in selected:
        position = f"[{stages.index(stage) + 1}/{len(stages)}]"
        echo(f"{position} {stage} ...")
        update_stage(run_dir, stage, status="running", started=time.strftime("%Y-%m-%dT%H:%M:%S"),
                     error=None, failed_cell=None)
        out = RunDir(run_dir).notebook(stage)
        start = time.perf_counter()
        try:
            execute_stage(stage, notebook_dir / f"{stage}.ipynb", out, params[stage], cwd=notebook_dir,
                          echo_to=echo_to, extra_path=extra_path)
        except (StageFailed, KeyboardInterrupt) as exc:
            duration = round(time.perf_counter() - start, 2)
            message = str(exc) if isinstance(exc, StageFailed) else f"stage {stage} interrupted"
            update_stage(run_dir, stage, status="failed", duration_s=duration, error=message,
                         failed_cell=getattr(exc, "cell", None))
            try:
                render_html(out)  # the failed notebook, with its traceback, is what the user reads next
            except (OSError, ValueError) as render_error:  # said, but the stage's own error stays the one raised
                echo(f"  could not render {out.name} to HTML: {type(render_error).__name__}: {render_error}")
            echo(f"{position} {stage} FAILED after {duration:.1f} s")
            if isinstance(exc, StageFailed):
                exc.run_dir = run_dir
            raise
        update_stage(run_dir, stage, status="done", duration_s=round(time.perf_counter() - start, 2))
        render_html(out)
        echo(f"{position} {stage} done in {time.perf_counter() - start:.1f} s -> "
             f"{RunDir(run_dir).notebook_html(stage)}")


def start_stage(run_dir: str | os.PathLike) -> RunDir:
    """What a stage notebook does first: log INFO lines to stdout (terminal and HTML show them), make the run dir."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stdout,
                        force=True)
    run = RunDir(run_dir)
    run.root.mkdir(parents=True, exist_ok=True)
    return run
