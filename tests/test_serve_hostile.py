"""Hostile and broken requests against the service in process: right codes, no echo, no leaked pool places."""
import base64
import io

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from voicelib.model import store
from voicelib.serve.app import create_app
from voicelib.serve.models import Models, ServeConfig

KEY = "hostile-key-0123456789"
SR = 16000


@pytest.fixture(scope="module")
def client(tmp_path_factory, save_tiny_model):
    base = tmp_path_factory.mktemp("hostile")
    store.register(save_tiny_model(base / "en", calibration=(40.0, 0.0)), root=base / "models",
                   language="english", promote=True)
    config = ServeConfig(models_root=str(base / "models"), api_keys=(KEY,), workers=1, queue_limit=1,
                         max_body_bytes=200_000, max_duration=30.0)
    with TestClient(create_app(config, models=Models(config))) as c:
        yield c


def _wav(seconds: float) -> bytes:
    buffer = io.BytesIO()
    wave = 0.1 * np.random.default_rng(0).standard_normal(int(seconds * SR)).astype(np.float32)
    sf.write(buffer, wave, SR, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _idle(client) -> None:
    state = client.get("/api/queue", headers={"x-api-key": KEY}).json()
    assert (state["active"], state["queued"]) == (0, 0), state  # no request kept its place


@pytest.mark.parametrize("raw, message", [
    (b"[" * 100_000, "Invalid API key or malformed request"),  # deeper than the JSON parser's stack
    (b"\xff\xfe\x00garbage", "Invalid API key or malformed request"),
    (b'{"language": {"$ne": 1}}', "Language is required."),
    (b'{"language": "English", "audioFormat": ["mp3"]}', "audioFormat is required."),
    (b'{"language": "English", "audioFormat": "mp3", "audioBase64": 12345}', "audioBase64 is required."),
    (b'{"language": "<script>alert(1)</script>"}', "Unsupported language."),
])
def test_malformed_bodies_get_400_and_are_never_echoed(client, raw, message):
    resp = client.post("/api/voice-detection", content=raw, headers={"x-api-key": KEY})
    assert resp.status_code == 400 and resp.json() == {"status": "error", "message": message}
    _idle(client)


def test_bodies_over_the_limit_are_refused_and_free_their_place(client):
    big = base64.b64encode(b"\0" * 300_000).decode()
    body = {"language": "English", "audioFormat": "wav", "audioBase64": big}
    assert client.post("/api/voice-detection", json=body, headers={"x-api-key": KEY}).status_code == 413
    estimate = {**body, "audioBase64": big[:300_000]}  # under the JSON limit, over the decoded limit
    resp = client.post("/api/voice-detection", json=estimate, headers={"x-api-key": KEY})
    assert resp.status_code == 400 and resp.json()["message"].startswith("File size exceeds")
    resp = client.post("/audio/analyze-audio", files={"audio_file": ("a.wav", b"\0" * 300_000)})
    assert resp.status_code == 413 and "limit" in resp.json()["detail"]
    _idle(client)


def test_filenames_and_contents_cannot_steer_the_decoder(client):
    for name in ("../../../etc/passwd", "a.wav/../../x", "C:\\\\evil.exe", "x" * 300 + ".wav", "blob"):
        resp = client.post("/audio/analyze-audio", files={"audio_file": (name, _wav(1.5))})
        assert resp.status_code == 200, (name, resp.text)
    junk = client.post("/audio/analyze-audio", files={"audio_file": ("a.mp3", b"ID3" + b"\0" * 2000)})
    assert junk.status_code == 500 and "/tmp" not in junk.text and "voicelib-serve" not in junk.text
    cut = client.post("/audio/analyze-audio", files={"audio_file": ("a.wav", _wav(3.0)[:2000])})  # cut short
    assert cut.status_code == 500 and "truncated" in cut.json()["detail"]
    _idle(client)


def test_errors_keep_their_family_shape_and_hide_the_api_from_strangers(client):
    assert client.get("/api/nowhere").json() == {"status": "error", "message": "Not Found"}
    assert client.put("/health").status_code == 404
    assert client.get("/audio/nowhere").json() == {"detail": "Not Found"}
    for headers in ({}, {"x-api-key": ""}, {"x-api-key": KEY + " "}, {"x-api-key": KEY.upper()}):
        assert client.post("/api/voice-detection", json={}, headers=headers).status_code == 404
    assert client.options("/anything/at/all").json() == {"status": "ok"}
