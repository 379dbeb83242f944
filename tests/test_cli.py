"""`python -m voicelib detect` through a subprocess: files, directories, globs, JSON/CSV, bad input, bad model."""
import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SR = 16000


@pytest.fixture(scope="module")
def audio_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("audio")
    rng = np.random.default_rng(0)
    (root / "dir" / "sub").mkdir(parents=True)
    for name in ("one.wav", "dir/two.flac", "dir/sub/three.wav", "glob_a.wav", "glob_b.wav"):
        sf.write(root / name, (0.1 * rng.standard_normal(SR * 2)).astype(np.float32), SR)
    return root


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, save_tiny_model):
    return save_tiny_model(tmp_path_factory.mktemp("cli_model") / "m")


@pytest.mark.slow  # the CLI in a subprocess
def test_json_over_files_dirs_and_globs(audio_tree, model_dir, run_cli):
    proc = run_cli("detect", audio_tree / "one.wav", audio_tree / "dir", str(audio_tree / "glob_*.wav"),
                   "--model", model_dir)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    names = [Path(r["file"]).name for r in results]
    assert names == ["one.wav", "three.wav", "two.flac", "glob_a.wav", "glob_b.wav"]
    assert all(0 <= r["aiScore"] <= 1 and r["chunks"] for r in results)


@pytest.mark.slow  # the CLI in a subprocess
def test_bad_inputs_become_error_entries_with_exit_code_1(audio_tree, model_dir, tmp_path, run_cli):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF" + b"\x00" * 40)
    sf.write(tmp_path / "silent.flac", np.zeros(SR, np.float32), SR)
    (tmp_path / "clip.xyz").write_bytes(b"abc")
    bad = ["missing.wav", "empty.wav", "corrupt.wav", "silent.flac", "clip.xyz"]
    proc = run_cli("detect", audio_tree / "one.wav", *[tmp_path / b for b in bad], "--model", model_dir,
                   "--format", "csv")
    assert proc.returncode == 1
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert [Path(r["file"]).name for r in rows] == ["one.wav"] + bad
    assert rows[0]["error"] == "" and 0 <= float(rows[0]["aiScore"]) <= 1 and int(rows[0]["nChunks"]) == 1
    assert all(r["error"] and r["aiScore"] == "" for r in rows[1:])
    assert "missing.wav" in proc.stderr  # each failure is logged once on stderr


@pytest.mark.slow  # the CLI in a subprocess
def test_bad_model_path_exits_2_with_one_line(audio_tree, tmp_path, run_cli):
    proc = run_cli("detect", audio_tree / "one.wav", "--model", tmp_path / "no_model")
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "no such model directory" in proc.stderr


def test_usage_errors_exit_2(audio_tree, model_dir, capsys):
    from voicelib.__main__ import main

    with pytest.raises(SystemExit) as exit_info:  # neither --model nor --language
        main(["detect", str(audio_tree / "one.wav")])
    assert exit_info.value.code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1
    assert main(["detect", str(audio_tree / "one.wav"), "--model", str(model_dir), "--overlap", "1.5"]) == 2
    assert "overlap" in capsys.readouterr().err


def test_models_list_promote_rollback(model_dir, tmp_path, capsys):
    from voicelib.__main__ import main
    from voicelib.model import store

    root = tmp_path / "models"
    first = store.register(model_dir, root=root, language="telugu", promote=True)
    second = store.register(model_dir, root=root, language="telugu", promote=True)
    assert main(["models", "list", "--language", "telugu", "--models-root", str(root)]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed == [{"version": first.name, "current": False}, {"version": second.name, "current": True}]
    assert main(["models", "rollback", "--language", "telugu", "--models-root", str(root)]) == 0
    assert store.current("telugu", root=root) == first
    assert main(["models", "promote", "--language", "te", "--models-root", str(root), "--entry", second.name]) == 0
    assert store.current("telugu", root=root) == second
    assert main(["models", "promote", "--language", "te", "--models-root", str(root),
                 "--entry", "20000101-000000"]) == 2
    assert "no version" in capsys.readouterr().err
