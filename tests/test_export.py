"""ONNX export (checked against torch) and dynamic int8 quantisation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from voicelib.metrics import eer
from voicelib.model import export
from voicelib.model.registry import build_model
from voicelib.model.saving import save_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny(tiny_config):
    return tiny_config()


def _toy_batch(n=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(n, 40, 101, generator=gen)
    feats[n // 2:, :, ::4] += 3.0  # class 1: a periodic temporal pattern
    return feats, np.r_[np.zeros(n // 2), np.ones(n // 2)]


def _trained(tiny):
    model = build_model(tiny, seed=0)
    feats, labels = _toy_batch()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(30):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(feats)["ai"],
                                                                    torch.tensor(labels, dtype=torch.float32))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def test_onnx_export_matches_torch_with_any_batch(tmp_path, tiny):
    import onnxruntime as ort

    model = build_model(tiny, seed=0).eval()
    save_model(model, tmp_path / "m", config={"model": tiny.to_dict()})
    path = export.export_onnx(tmp_path / "m", tmp_path / "m.onnx")
    feats = torch.randn(5, 40, 101)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ai, language, multi = session.run(["ai", "language", "multi"], {"features": feats.numpy()})
    with torch.no_grad():
        want = model(feats)
    assert ai.shape == (5,) and language.shape == (5, 5)
    np.testing.assert_allclose(ai, want["ai"].numpy(), atol=1e-4)
    assert export.onnx_max_diff(model, path, torch.randn(1, 40, 101)) < 1e-4


def test_quantized_model_stays_close_and_still_separates(tiny):
    model = _trained(tiny)
    quant = export.quantize_dynamic(model)
    feats, labels = _toy_batch(seed=1)  # fresh examples of the same two patterns
    with torch.no_grad():
        a, b = model(feats)["ai"].numpy(), quant(feats)["ai"].numpy()
    assert np.max(np.abs(a - b)) < 0.05 * (np.max(np.abs(a)) + 1e-3) + 0.02
    assert eer(labels, a)[0] == 0.0 and eer(labels, b)[0] == 0.0
    assert any("quantized.dynamic" in type(m).__module__ for m in quant.modules())
    assert not any("quantized" in type(m).__module__ for m in model.modules())  # the float model is left alone
