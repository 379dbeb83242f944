"""Atomic file writes, JSON helpers and content hashes shared by every stage."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator


def _umask_mode() -> int:
    """The mode a plainly created file gets (0o666 less the umask); mkstemp would leave 0o600."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[Any]:
    """Write to a temporary file beside `path` and rename it into place only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, _umask_mode())
    try:
        with open(tmp, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path (same suffix) that is renamed to `path` when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    os.chmod(tmp, _umask_mode())
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _plain(value: Any) -> Any:
    """JSON form of the few non-JSON types we write on purpose (numpy scalars and arrays, paths); else TypeError."""
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"cannot write a {type(value).__name__} to JSON ({str(value)[:60]!r}); convert it first")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented UTF-8 JSON, atomically; a value JSON cannot hold is refused, never stringified."""
    text = json.dumps(obj, indent=2, ensure_ascii=False, default=_plain)  # fails before the file is touched
    with atomic_write(path, "w", encoding="utf-8") as handle:
        handle.write(text + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file, naming the file when it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); restore it from its .bak copy or rerun the stage") from exc


def file_hash(path: str | os.PathLike, *, chunk_size: int = 1 << 20) -> str:
    """Return the first 16 hex digits of the SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def backup_if_exists(path: str | os.PathLike) -> Path | None:
    """Copy an existing file to `<name>.<timestamp>.bak` before it is replaced; return the copy."""
    path = Path(path)
    if not path.exists():
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    backup = path.with_name(f"{path.name}.{stamp}.bak")
    n = 1
    while backup.exists():
        backup = path.with_name(f"{path.name}.{stamp}-{n}.bak")
        n += 1
    shutil.copy2(path, backup)
    return backup


class RunDir:
    """Every path a pipeline run writes under reports/<language>/<run-id>/: the only place their names are spelt.

    The stages talk only through these files (docs/DESIGN.md, "Run directory"), so a stage can be rerun alone
    and the report is built from them alone.
    """

    STAGE_FILES = {  # file -> the stage that writes it (docs/DESIGN.md's table; tests keep the two in step)
        "params.json": "run_pipeline.py", "stages.json": "run_pipeline.py",
        "manifest.csv": "01_collect_data", "quarantine.csv": "01_collect_data", "data_summary.json": "01_collect_data",
        "augment/augment.json": "02_augment", "augment/examples/": "02_augment",
        "model/": "03_finetune", "history.csv": "03_finetune", "train.json": "03_finetune",
        "metrics.json": "04_evaluate", "scores.csv": "04_evaluate", "val_scores.csv": "04_evaluate",
        "lofo.json": "04_evaluate", "lofo_scores.csv": "04_evaluate", "lofo_val_scores.csv": "04_evaluate",
        "lofo/": "04_evaluate", "final_model/": "05_final_fit", "final.json": "05_final_fit",
        "index.html": "06_report",
    }

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"

    def __fspath__(self) -> str:
        return str(self.root)

    def _path(self, name: str) -> Path:
        return self.root / name.rstrip("/")

    # written by run_pipeline.py
    params = property(lambda self: self._path("params.json"))
    stages = property(lambda self: self._path("stages.json"))
    # 01_collect_data
    manifest = property(lambda self: self._path("manifest.csv"))
    quarantine = property(lambda self: self._path("quarantine.csv"))
    data_summary = property(lambda self: self._path("data_summary.json"))
    # 02_augment
    augment_dir = property(lambda self: self._path("augment/"))
    augment_config = property(lambda self: self._path("augment/augment.json"))
    augment_examples = property(lambda self: self._path("augment/examples/"))
    # 03_finetune
    model = property(lambda self: self._path("model/"))
    history = property(lambda self: self._path("history.csv"))
    train_summary = property(lambda self: self._path("train.json"))
    # 04_evaluate
    metrics = property(lambda self: self._path("metrics.json"))
    scores = property(lambda self: self._path("scores.csv"))
    val_scores = property(lambda self: self._path("val_scores.csv"))
    lofo = property(lambda self: self._path("lofo.json"))
    lofo_scores = property(lambda self: self._path("lofo_scores.csv"))
    lofo_val_scores = property(lambda self: self._path("lofo_val_scores.csv"))
    lofo_folds = property(lambda self: self._path("lofo/"))
    # 05_final_fit
    final_model = property(lambda self: self._path("final_model/"))
    final_summary = property(lambda self: self._path("final.json"))
    # 06_report
    index = property(lambda self: self._path("index.html"))

    def notebook(self, stage: str) -> Path:
        """The executed copy of a stage's notebook."""
        return self.root / f"{stage}.ipynb"

    def notebook_html(self, stage: str) -> Path:
        """The stage's notebook rendered to HTML."""
        return self.root / f"{stage}.html"

    def read(self, path: Path) -> Any:
        """The JSON file's content, or {} when the stage that writes it has not run."""
        return read_json(path) if path.is_file() else {}

    @staticmethod
    def latest(runs_dir: str | os.PathLike) -> Path:
        """reports/<language>/latest.json: the newest completed run of a language."""
        return Path(runs_dir) / "latest.json"
