"""Detection as a lean path: numpy front ends equal to the torch ones, the ONNX graph stored once with the model and
tied to its weights, and scoring from a stored graph without importing torch, librosa, numba, pandas or scipy."""
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voicelib.audio import features
from voicelib.audio.features import NUMPY_KINDS, FeatureConfig, NumpyFrontEnd
from voicelib.errors import ModelError
from voicelib.metrics import sigmoid
from voicelib.model import export, saving, store
from voicelib.scoring.load import load_detector

pytest.importorskip("onnxruntime")

SR = 16000
REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "librosa", "numba", "pandas", "scipy", "sklearn")


def graphs(model_dir: Path) -> list[str]:
    return sorted(p.name for p in Path(model_dir).glob("*.onnx"))


@pytest.fixture
def model_dir(tmp_path, save_tiny_model):
    return save_tiny_model(tmp_path / "tiny")


@pytest.mark.parametrize("settings", [{}, {"n_mels": 40, "fmin": 0.0, "fmax": 4000.0},
                                      {"sample_rate": 22050, "n_fft": 1024, "win_length": 1024, "fmax": 11025.0},
                                      {"n_mels": 128, "fmin": 300.0, "fmax": 7600.0}])
def test_mel_filterbank_is_librosas_exactly(settings):
    librosa = pytest.importorskip("librosa")
    cfg = FeatureConfig(**settings)
    want = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax,
                               htk=False, norm="slaney")
    got = features.mel_filterbank(cfg)
    assert got.dtype == want.dtype == np.float32 and np.array_equal(got, want)


def test_dct_matrix_is_scipys():
    scipy_fft = pytest.importorskip("scipy.fft")
    np.testing.assert_allclose(features.dct_matrix(70), scipy_fft.dct(np.eye(70), type=2, norm="ortho", axis=0),
                               atol=1e-12)


@pytest.mark.parametrize("preset", [*NUMPY_KINDS, "linear80", "top_db"])
def test_numpy_front_end_equals_the_torch_module(preset, make_noise):
    torch = pytest.importorskip("torch")
    cfg = FeatureConfig(top_db=60.0) if preset == "top_db" else FeatureConfig.from_dict(preset)
    waves = np.stack([make_noise(duration=2.0, seed=i) for i in range(3)])
    waves[1, 8000:20000] = 0.0  # digital silence: log(eps) bins
    with torch.no_grad():
        want = features.frontend(cfg)(torch.from_numpy(waves)).numpy()
    got = NumpyFrontEnd(cfg, group=2)(waves)
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=5e-4, rtol=1e-5)
    np.testing.assert_allclose(NumpyFrontEnd(cfg)(waves[2]), got[2], atol=1e-6)


def test_numpy_front_end_refuses_whisper_and_empty_waves():
    with pytest.raises(ValueError, match="no numpy version"):
        NumpyFrontEnd(FeatureConfig.from_dict("whisper"))
    with pytest.raises(ValueError, match="empty wave"):
        NumpyFrontEnd(FeatureConfig())(np.zeros((2, 0), np.float32))


def test_sigmoid_is_expit():
    expit = pytest.importorskip("scipy.special").expit
    x = np.linspace(-800.0, 800.0, 4001)
    np.testing.assert_allclose(sigmoid(x), expit(x), rtol=1e-12, atol=1e-300)
    assert isinstance(sigmoid(0.5), np.floating)


def test_the_graph_is_exported_once_and_stored_with_the_model(model_dir, make_noise, monkeypatch):
    waves = [make_noise(duration=d, seed=i) for i, d in enumerate((0.7, 5.0))]
    first = load_detector(model_dir).score_arrays(waves, SR)
    key = saving.graph_key(model_dir)
    assert graphs(model_dir) == [saving.graph_name(301, key)]  # 3 s windows: 301 frames

    def no_export(*args, **kwargs):
        raise AssertionError("exported again although the graph is stored")

    monkeypatch.setattr(export, "export_onnx", no_export)
    again = load_detector(model_dir).score_arrays(waves, SR)
    assert [r["aiLogit"] for r in again] == [r["aiLogit"] for r in first]
    monkeypatch.undo()
    other = load_detector(model_dir).score_arrays(waves, SR, chunk_duration=2.0)  # another window: another graph
    assert graphs(model_dir) == sorted([saving.graph_name(201, key), saving.graph_name(301, key)])
    ref = load_detector(model_dir, backend="torch").score_arrays(waves, SR, chunk_duration=2.0)
    assert [r["aiLogit"] for r in other] == pytest.approx([r["aiLogit"] for r in ref], abs=1e-4)


def test_changed_weights_never_use_the_stale_graph(model_dir, save_tiny_model, make_noise, caplog):
    load_detector(model_dir)
    stale = graphs(model_dir)
    save_tiny_model(model_dir, seed=1)  # new weights in the same directory
    wave = make_noise(duration=4.0)
    with caplog.at_level(logging.WARNING, logger="voicelib.model.saving"):
        fresh = load_detector(model_dir).score_array(wave, SR)
    assert "exported from other weights" in caplog.text and stale[0] in caplog.text
    assert graphs(model_dir) == [saving.graph_name(301, saving.graph_key(model_dir))] != stale
    assert fresh["aiLogit"] == pytest.approx(load_detector(model_dir, backend="torch").score_array(wave, SR)["aiLogit"],
                                             abs=1e-4)


def test_corrupt_weights_are_refused_although_a_graph_is_stored(model_dir):
    load_detector(model_dir)
    (model_dir / saving.WEIGHTS).write_bytes(b"not safetensors" * 100)
    with pytest.raises(ModelError, match="corrupt weights"):
        load_detector(model_dir)


def test_a_read_only_model_directory_keeps_its_graph_in_the_cache(model_dir, tmp_path, monkeypatch, caplog):
    real = export.atomic_path
    blocked = {model_dir}

    def atomic_path(path):
        if Path(path).parent in blocked:
            raise PermissionError(f"read-only: {path}")
        return real(path)

    monkeypatch.setattr(export, "atomic_path", atomic_path)
    monkeypatch.setenv("VOICELIB_CACHE", str(tmp_path / "cache"))
    load_detector(model_dir)
    assert graphs(model_dir) == [] and graphs(tmp_path / "cache" / "onnx") == [
        saving.graph_name(301, saving.graph_key(model_dir))]
    blocked.add(tmp_path / "nowhere" / "onnx")  # neither the model directory nor the cache can be written
    monkeypatch.setenv("VOICELIB_CACHE", str(tmp_path / "nowhere"))
    with caplog.at_level(logging.WARNING, logger="voicelib.model.export"):
        assert load_detector(model_dir).score_array(np.full(SR, 0.1, np.float32), SR)["aiScore"] >= 0
    assert "nowhere to store" in caplog.text


def test_register_copies_the_stored_graph(model_dir, tmp_path):
    load_detector(model_dir)
    entry = store.register(model_dir, root=tmp_path / "models", language="hindi", promote=True)
    assert graphs(entry) == graphs(model_dir) and len(graphs(entry)) == 1


# scores a file with the plain and the ensemble path, then says which heavy packages got imported
LEAN = f"HEAVY = {HEAVY!r}\n" + """
import json, sys
import voicelib.__main__
from voicelib.scoring.load import load_detector, load_ensemble
from voicelib.scoring.paths import detect_paths
results, failed = detect_paths([sys.argv[1]], load_detector(sys.argv[2]))
fused = load_ensemble(sys.argv[2:]).score_file(sys.argv[1])
print(json.dumps({"failed": failed, "fused": "error" not in fused, "loaded": [m for m in HEAVY if m in sys.modules]}))
"""


def test_scoring_from_stored_graphs_imports_no_torch_librosa_pandas_or_scipy(tmp_path, save_tiny_model, make_noise):
    dirs = [save_tiny_model(tmp_path / name, seed=i) for i, name in enumerate(("a", "b"))]
    for d in dirs:
        load_detector(d)  # exports and stores each graph (this process has torch)
    sf.write(tmp_path / "clip.wav", make_noise(duration=5.0), SR)
    proc = subprocess.run([sys.executable, "-c", LEAN, str(tmp_path / "clip.wav"), *map(str, dirs)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out == {"failed": 0, "fused": True, "loaded": []}
