"""Model store: save/load round trip (safetensors + JSON only), versions, promote, rollback, errors."""
from __future__ import annotations

import json
import pickle

import pytest
import torch

from voicelib.errors import ModelError
from voicelib.model import store
from voicelib.model.registry import build_model
from voicelib.model.saving import load_model, save_model


@pytest.fixture(scope="module")
def write_model(tiny_config):
    """Factory saving a tiny seeded model with a threshold and a validation EER; returns the model."""
    def save(path, *, seed=0):
        tiny = tiny_config()
        model = build_model(tiny, seed=seed).eval()
        save_model(model, path, config={"model": tiny.to_dict(), "threshold": 0.5, "language": "hindi"},
                   metrics={"val_eer": 0.1})
        return model

    return save


def test_round_trip_gives_identical_outputs(tmp_path, write_model):
    model = write_model(tmp_path / "m")
    loaded, meta = load_model(tmp_path / "m")
    x = torch.randn(2, 40, 101)
    with torch.no_grad():
        for head, value in model(x).items():
            torch.testing.assert_close(loaded(x)[head], value, rtol=0, atol=0)
    assert meta["threshold"] == 0.5 and meta["metrics"]["val_eer"] == 0.1 and not loaded.training


def test_loading_never_unpickles(tmp_path, monkeypatch, write_model):
    write_model(tmp_path / "m")
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (marker.write_text, ("x",))

    (tmp_path / "m" / "model.pt").write_bytes(pickle.dumps(Evil()))
    def refuse(*args, **kwargs):
        raise AssertionError("inference loading must not unpickle")
    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    load_model(tmp_path / "m")
    assert not marker.exists()


def test_clear_errors_for_broken_model_dirs(tmp_path, write_model):
    with pytest.raises(ModelError, match="no such model directory"):
        load_model(tmp_path / "absent")
    write_model(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="corrupt weights"):
        load_model(tmp_path / "m")
    write_model(tmp_path / "w")
    config = json.loads((tmp_path / "w" / "config.json").read_text())
    config["model"]["width"] = 16
    (tmp_path / "w" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="do not match"):
        load_model(tmp_path / "w")
    (tmp_path / "w" / "config.json").unlink()
    with pytest.raises(ModelError, match="config.json is missing"):
        load_model(tmp_path / "w")


def test_register_promote_rollback_never_overwrite(tmp_path, write_model):
    root = tmp_path / "models"
    write_model(tmp_path / "a", seed=0)
    write_model(tmp_path / "b", seed=1)
    first = store.register(tmp_path / "a", root=root, language="hi", promote=True)
    second = store.register(tmp_path / "b", root=root, language="hindi", promote=False)
    assert first != second and first.parent == root / "hindi"
    assert store.list_models(root, "hindi") == [first.name, second.name]
    assert store.current("hindi", root=root) == first
    store.promote(root, "hindi", second.name)
    assert store.current("hindi", root=root) == second
    assert store.rollback(root, "hindi") == first and store.current("hindi", root=root) == first
    assert (first / "model.safetensors").read_bytes() == (tmp_path / "a" / "model.safetensors").read_bytes()
    with pytest.raises(ModelError, match="nothing to roll back"):
        store.rollback(root, "hindi")
    with pytest.raises(ModelError, match="no version"):
        store.promote(root, "hindi", "20000101-000000")
    with pytest.raises(ModelError, match="no current model"):
        store.current("tamil", root=root)
    with pytest.raises(ModelError, match="missing"):
        store.register(tmp_path, root=root, language="hindi")
