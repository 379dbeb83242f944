"""The stage runner: parameter rules and refusal, failure reporting and resume (dummy notebooks), the smoke run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

import run_pipeline
from voicelib.stages import final_fit, runner
from voicelib.stages import params as P

REPO = Path(__file__).resolve().parents[1]
STAGES = run_pipeline.STAGES


def _notebook(path: Path, params: str, body: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {path.stem}"), cell, nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, path)


@pytest.fixture
def dummy(tmp_path: Path) -> Path:
    """Five tiny stage notebooks; 03 fails when its `fail` flag file exists, each stage appends to a log."""
    nbdir = tmp_path / "nb"
    nbdir.mkdir()
    base = 'run_dir: str = "."  # run directory\nseed: int = 0  # seed\nlanguage: str = "hindi"  # language\n'
    for stage in STAGES:
        extra = ("training: dict = {}  # TrainConfig fields\nresume_training: bool = False  # continue training\n"
                 if stage == "03_finetune" else "")
        body = ("from pathlib import Path\n"
                f"Path(run_dir, 'log.txt').open('a').write('{stage}\\n')\n"
                f"print('working on {stage}')\n")
        if stage == "03_finetune":
            body += ("Path(run_dir, 'resume.txt').open('a').write(f'{resume_training}\\n')\n"
                     "x = 1\nif Path(run_dir, 'fail').exists():\n    raise RuntimeError('boom in finetune')\n")
        _notebook(nbdir / f"{stage}.ipynb", base + extra, body)
    return nbdir


def _cli(nbdir: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(REPO / "run_pipeline.py"), "--notebooks-dir", str(nbdir), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=nbdir.parent)


def test_collect_parameters_unions_stages_and_refuses_disagreeing_defaults(dummy: Path) -> None:
    known = P.collect_parameters([dummy / f"{s}.ipynb" for s in STAGES])
    assert set(known) == {"run_dir", "seed", "language", "training", "resume_training"}
    assert known["training"].stages == ("03_finetune",) and known["training"].default == {}
    assert len(known["seed"].stages) == len(STAGES)
    _notebook(dummy / "04_evaluate.ipynb", 'seed: int = 1  # seed\n', "")
    with pytest.raises(ValueError, match="parameter seed: 04_evaluate declares int = 1 but 01_collect_data"):
        P.collect_parameters([dummy / f"{s}.ipynb" for s in STAGES])


def test_unknown_parameter_refused_with_suggestion(dummy: Path, tmp_path: Path) -> None:
    known = P.collect_parameters([dummy / f"{s}.ipynb" for s in STAGES])
    rules = {name: run_pipeline.RULES[name] for name in known}
    resolve = lambda layers: P.resolve(known, rules, layers, cwd=tmp_path, defaults_base=dummy)  # noqa: E731
    with pytest.raises(ValueError, match="did you mean seed"):
        resolve([("--config x.yaml", {"sed": 2})])
    with pytest.raises(ValueError, match="must be int"):
        resolve([("cli", {"seed": "two"})])
    with pytest.raises(ValueError, match="must be int"):
        resolve([("cli", {"seed": True})])
    with pytest.raises(ValueError, match="unknown field.*epoch;"):
        resolve([("cli", {"training": {"epoch": 2}})])
    lists = P.Param("tts_engines", "list", ["gtts"], "", ("01",))
    assert P.check_value(lists, "espeak") == ["espeak"]
    assert P.check_value(P.Param("lr", "float", 0.1, "", ("03",)), 1) == 1.0


@pytest.mark.slow  # run_pipeline.py in a subprocess
def test_the_command_refuses_an_unknown_parameter_of_a_config_file(dummy: Path, tmp_path: Path) -> None:
    config = tmp_path / "p.yaml"
    config.write_text("training: {epochs: 2}\nlearning_rat: 0.1\n")
    result = _cli(dummy, "--language", "hindi", "--config", str(config), "--run-dir", str(tmp_path / "r"))
    assert result.returncode == 2
    assert "unknown parameter 'learning_rat'" in result.stderr and not (tmp_path / "r").exists()


def test_parameter_layers_merge_dicts_and_resolve_paths(dummy: Path, tmp_path: Path) -> None:
    known = P.collect_parameters([dummy / f"{s}.ipynb" for s in STAGES])
    rules = {name: run_pipeline.RULES[name] for name in known}
    params = P.resolve(known, rules, [("yaml", {"training": {"epochs": 5, "lr": 0.01}, "seed": 1}),
                                      ("cli", {"training": {"epochs": 7}})], cwd=tmp_path, defaults_base=dummy)
    assert params["training"] == {"epochs": 7, "lr": 0.01} and params["seed"] == 1
    assert params["run_dir"] == str(dummy.resolve())  # notebook defaults are relative to the notebooks
    assert P.parse_set(["training.epochs=4", "tts_engines=[gtts, espeak]"]) == {
        "training": {"epochs": 4}, "tts_engines": ["gtts", "espeak"]}
    with pytest.raises(ValueError, match="name=value"):
        P.parse_set(["epochs"])
    with pytest.raises(ValueError, match="no rule for parameter"):
        P.resolve(known, {}, [], cwd=tmp_path, defaults_base=dummy)


BAD_PARAMETERS = [
    (["--epochs", "-3"], "parameter training: TrainConfig: epochs=-3 is out of range; allowed: 1 to 100000"),
    (["--set", "val_fraction=1.5"], "parameter val_fraction=1.5 is out of range; allowed: 0.01 to 0.8"),
    (["--tts", "espeek"], "parameter tts_engines='espeek' is not allowed; choose from"),
    (["--set", "training.lr=-1"], "lr=-1 is out of range"),
    (["--data-dir", "no/such/folder"], "no such folder"),
    (["--base-model", "no/such/model"], "is not a model directory"),
    (["--set", "bootstrap=3"], "parameter bootstrap=3 is out of range; allowed: 10 to 100000"),
    (["--dask-scheduler", "host:8786"], "parameter dask_scheduler: 'host:8786' is not a scheduler address"),
    (["--nproc-per-node", "0"], "parameter nproc_per_node=0 is out of range; allowed: 1 to 64"),
    (["--set", "architecture.width=100000"], "width 100000 / blocks [2, 2, 2, 2] invalid; use width 1..512"),
    (["--set", "val_fraction=0.5", "test_fraction=0.45"], "val_fraction + test_fraction = 0.95 leaves 5% of the audio"),
]


@pytest.mark.parametrize("args, message", BAD_PARAMETERS)
def test_bad_parameters_are_refused_by_main_in_one_line(tmp_path: Path, monkeypatch, capsys, args: list[str],
                                                        message: str) -> None:
    monkeypatch.chdir(tmp_path)  # relative folders in the arguments are read from here, as in the subprocess
    assert run_pipeline.main(["--language", "hindi", "--run-dir", str(tmp_path / "run"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


@pytest.mark.slow  # run_pipeline.py in a subprocess per case
@pytest.mark.parametrize("args, message", BAD_PARAMETERS)
def test_bad_parameters_fail_before_any_stage_in_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, str(REPO / "run_pipeline.py"), "--language", "hindi", "--run-dir",
                             str(tmp_path / "run"), *args], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()
    assert time.perf_counter() - start < 60  # seconds, not a stage's minutes (a generous bound on a busy machine)


@pytest.mark.slow  # run_pipeline.py runs notebooks in kernels
def test_failure_renders_html_names_cell_and_resume_skips_done(dummy: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "fail").touch()
    result = _cli(dummy, "--language", "hindi", "--run-dir", str(run_dir), "--epochs", "2")
    assert result.returncode == 1
    assert "stage 03_finetune failed at cell" in result.stderr and "boom in finetune" in result.stderr
    assert "    working on 01_collect_data" in result.stdout  # cell output streams to the terminal, indented
    assert (run_dir / "03_finetune.html").is_file() and "boom in finetune" in (run_dir / "03_finetune.html").read_text()
    stages = json.loads((run_dir / "stages.json").read_text())["stages"]
    assert list(stages) == STAGES
    assert stages["01_collect_data"]["status"] == "done" and stages["03_finetune"]["status"] == "failed"
    assert stages["03_finetune"]["failed_cell"] is not None and stages["04_evaluate"]["status"] == "pending"
    assert not (tmp_path / "latest.json").exists()

    (run_dir / "fail").unlink()
    result = _cli(dummy, "--run-dir", str(run_dir), "--quiet")
    assert result.returncode == 0, result.stderr
    assert "working on" not in result.stdout
    assert (run_dir / "log.txt").read_text().split() == STAGES[:3] + STAGES[2:]  # 01, 02 not redone
    assert (run_dir / "resume.txt").read_text().split() == ["False", "True"]  # the training continues, not restarts
    assert json.loads((run_dir / "params.json").read_text())["parameters"]["training"] == {"epochs": 2}
    assert json.loads((tmp_path / "latest.json").read_text())["run_id"] == "run"
    assert all((run_dir / f"{s}.html").is_file() for s in STAGES)

    result = _cli(dummy, "--run-dir", str(run_dir), "--stages", "02")
    assert result.returncode == 0, result.stderr
    stages = json.loads((run_dir / "stages.json").read_text())["stages"]
    assert stages["03_finetune"]["status"] == "stale"  # an earlier stage reran
    assert f"[2/{len(STAGES)}] 02_augment" in result.stdout


def test_a_runner_bug_is_not_reported_as_a_stage_failure(tmp_path: Path, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise TypeError("a bug in the runner")

    monkeypatch.setattr(runner, "execute_stage", broken)
    (tmp_path / "run").mkdir()
    with pytest.raises(TypeError, match="a bug in the runner"):
        runner.run_stages(["01_x"], ["01_x"], {"01_x": {}}, tmp_path / "run", notebook_dir=tmp_path, echo_to=None)


def test_select_stages_and_names() -> None:
    status = {"01_collect_data": {"status": "done"}, "02_augment": {"status": "failed"}}
    assert runner.select_stages(STAGES, status) == STAGES[1:]
    assert runner.select_stages(STAGES, status, start="finetune") == STAGES[2:]
    assert runner.select_stages(STAGES, status, only=["05", "01_collect_data"]) == [STAGES[0], STAGES[4]]
    with pytest.raises(ValueError, match="unknown stage"):
        runner.select_stages(STAGES, status, start="train")


def _speech_root(tmp_path: Path) -> Path:
    """A tiny local corpus in the <root>/<language>/{human,ai} layout: espeak voices standing in for both."""
    espeak = pytest.importorskip("voicelib.data.espeak")
    import soundfile as sf

    root = tmp_path / "speech"
    rng = np.random.default_rng(0)
    sentences = ["namaste aap kaise hain", "aaj mausam achchha hai", "yah ek pariksha hai", "ham ghar ja rahe hain",
                 "kal subah milenge", "pani garam hai"]
    voices = {"human": ["m1", "m3", "f2", "m7"], "ai": ["f4", "m2", "f1"]}
    for label, variants in voices.items():
        for v, variant in enumerate(variants):
            for i, text in enumerate(sentences):
                wave, sr = espeak.synthesize(text, language="hi", variant=variant, pitch=40 + 5 * v, rate=140 + 10 * v)
                wave = wave + 0.002 * rng.standard_normal(wave.size).astype(np.float32)  # a microphone's noise floor
                path = root / "hindi" / label / f"local-{label}{v}-{i:04d}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, wave, sr)
    return root


def _smoke(tmp_path: Path, root: Path, name: str) -> tuple[Path, subprocess.CompletedProcess]:
    run_dir = tmp_path / "reports" / "hindi" / name
    env = {**os.environ, "VOICELIB_OFFLINE": "1"}
    cmd = [sys.executable, str(REPO / "run_pipeline.py"), "--language", "hindi", "--smoke", "--data-dir", str(root),
           "--tts", "espeak", "--run-dir", str(run_dir), "--set", f"data_root={tmp_path / 'data'}",
           f"models_root={tmp_path / 'models'}"]
    return run_dir, subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path, env=env)


@pytest.mark.slow
def test_smoke_end_to_end_twice_gives_the_same_metrics(tmp_path: Path) -> None:
    root = _speech_root(tmp_path)
    run_dir, result = _smoke(tmp_path, root, "smoke")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "voicelib.training.fit: epoch 1/1: train loss" in result.stdout  # training progress on the terminal
    for stage in STAGES:
        assert (run_dir / f"{stage}.html").is_file(), stage
    assert "epoch 1/1: train loss" in (run_dir / "03_finetune.html").read_text()  # the same lines in the HTML
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"eer", "roc_auc", "threshold", "ci", "baselines"} <= set(metrics) and metrics["model_dir"] == "model"
    index = (run_dir / "index.html").read_text()
    assert "data:image/png;base64," in index and "<audio" in index and "http" not in index.split("<body")[0]
    assert json.loads((tmp_path / "reports" / "hindi" / "latest.json").read_text())["run_id"] == "smoke"
    config = json.loads((run_dir / "model" / "config.json").read_text())
    assert config["train_config"]["epochs"] == 1 and config["train_config"]["batch_size"] == 8  # configs/smoke.yaml
    assert config["model"]["preprocess"]["vad_backend"] == "energy"  # the default: prepared audio in every path
    final = json.loads((run_dir / "final.json").read_text())  # 05_final_fit: the shipped model saw every clip
    manifest = pd.read_csv(run_dir / "manifest.csv")
    assert final["enabled"] and final["n_clips"] == manifest["split"].isin(["train", "val", "test"]).sum()
    shipped = json.loads((Path(final["store_entry"]) / "config.json").read_text())
    assert shipped["threshold"] == final["operating_point"]["threshold"] == final_fit.heldout_operating_point(run_dir)[
        "threshold"]  # from the evaluated model's validation and test scores
    assert "Which model is which" in index and "refitted on all" in index

    again, result = _smoke(tmp_path, root, "again")  # same command, same seed, same machine
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (again / "metrics.json").read_text() == (run_dir / "metrics.json").read_text()
