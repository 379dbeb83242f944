"""The two peers' contracts (docs/PEERS.md): fAIk-Backend's /audio/* and voice-ai-detection's /api/*.

Pure pieces are checked directly; the contract is checked over HTTP against `python -m voicelib serve` in a
subprocess, replaying the requests of the peers' own clients (test_audio_api.py, scripts/smoke_test.sh).
Set FAIK_BACKEND_DIR / VOICE_AI_DETECTION_DIR to checkouts of the peers to also run those scripts unchanged.
"""
import base64
import io
import json
import os
import subprocess
import sys
import threading
import time
from argparse import Namespace
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from fastapi import HTTPException
from fastapi.testclient import TestClient

from voicelib.model import store
from voicelib.serve.app import config_from, create_app
from voicelib.serve.faik import faik_bounds, v1_error
from voicelib.serve.models import Models, Pool, ServeConfig
from voicelib.serve.ratelimit import RateLimiter
from voicelib.serve.shapes import _percent, centred
from voicelib.serve.vad import decode_base64, parse_request

SR = 16000
ORIGIN = "http://localhost:5173"
KEYS = ("key-one-0123456789", "key-two-abcdefghij")


def _sine_wav(seconds: float, *, amplitude: float = 1.0, fmt: str = "WAV") -> bytes:
    """test_audio_api.py's file: a full-scale 440 Hz sine, 16 kHz mono 16-bit."""
    t = np.linspace(0, seconds, int(SR * seconds))
    buffer = io.BytesIO()
    sf.write(buffer, (amplitude * np.sin(2 * np.pi * 440 * t)).astype(np.float32), SR, format=fmt, subtype="PCM_16")
    return buffer.getvalue()


# ---- pure pieces ------------------------------------------------------------------------------------------------

def test_centred_probability_maps_the_threshold_to_one_half():
    for t in (0.2, 0.5, 0.83):
        assert centred(t, t) == 0.5 and centred(0.0, t) == 0.0 and centred(1.0, t) == pytest.approx(1.0)
        grid = [centred(p, t) for p in np.linspace(0, 1, 101)]
        assert grid == sorted(grid)  # monotone
    assert centred(0.1, 0.2) == pytest.approx(0.25) and centred(0.6, 0.2) == pytest.approx(0.75)


def test_explanation_percent_rounds_like_javascript_to_fixed():
    assert _percent(0.93) == "93.0" and _percent(0.1225) == "12.3" and _percent(0.0) == "0.0"


def test_faik_window_layout_matches_the_peers_test_vectors():
    def secs(n, cd, ov):
        return [(s / SR, e / SR) for s, e in faik_bounds(int(n * SR), SR, chunk_duration=cd, overlap=ov)]
    assert secs(15, 3.0, 0.3) == [(0, 3), (2.1, 5.1), (4.2, 7.2), (6.3, 9.3), (8.4, 11.4), (10.5, 13.5)]
    assert secs(12, 5.0, 0.5) == [(0, 5), (2.5, 7.5), (5, 10)]
    assert secs(1.2, 5.0, 0.5) == [(0, 5)]


def test_pydantic_errors_are_worded_as_pydantic_v1():
    assert v1_error({"type": "missing", "loc": ("body", "audio_file"), "msg": "Field required"}) == {
        "loc": ["body", "audio_file"], "msg": "field required", "type": "value_error.missing"}
    assert v1_error({"type": "greater_than_equal", "loc": ("query", "chunk_duration"), "ctx": {"ge": 1.0}}) == {
        "loc": ["query", "chunk_duration"], "msg": "ensure this value is greater than or equal to 1.0",
        "type": "value_error.number.not_ge", "ctx": {"limit_value": 1.0}}
    assert v1_error({"type": "float_parsing", "loc": ("query", "overlap")})["type"] == "type_error.float"


def test_base64_variants_the_peer_accepts():
    data = bytes(range(256)) * 3
    std = base64.b64encode(data).decode()
    for text in (std, base64.urlsafe_b64encode(data).decode(), std.rstrip("="), std[:60] + "\n  " + std[60:],
                 "data:audio/mpeg;base64," + std):
        assert decode_base64(text) == data
    for bad, word in (("@@not base64@@", "not valid base64"), ("====", "Failed to decode")):
        with pytest.raises(HTTPException, match=word):
            decode_base64(bad)


@pytest.mark.parametrize("raw, message", [
    (b"{not json", "Invalid API key or malformed request"), (b"", "Malformed request body."),
    (b"null", "Malformed request body."), (b"42", "Malformed request body."), (b"[]", "Language is required."),
    (b'{"language": " "}', "Language is required."), (b'{"language": "Klingon"}', "Unsupported language."),
    (b'{"language": "English"}', "audioFormat is required."),
    (b'{"language": "English", "audioFormat": "xyz"}', "Unsupported audio format."),
    (b'{"language": "English", "audioFormat": "mp3", "audioBase64": ""}', "audioBase64 is required."),
    (b'{"language": "English", "audioFormat": "mp3", "audioBase64": "' + b"A" * 1400 + b'"}',
     "File size exceeds 0.000953674 MB limit."),
])
def test_voice_detection_checks_in_the_peers_order_and_words(raw, message):
    with pytest.raises(HTTPException) as err:
        parse_request(raw, max_audio_bytes=1000)
    assert (err.value.status_code, err.value.detail) == (400, message)


def test_a_full_pool_refuses_with_retry_after_and_counts_the_queue():
    pool = Pool(1, 1)
    first, second = pool.admit(), pool.admit()
    assert pool.queue_state() == {"active": 1, "queued": 1, "maxConcurrent": 1, "maxQueue": 1}
    assert (first.position, second.position) == (0, 1)
    with pytest.raises(HTTPException) as err:
        pool.admit(lambda queued: f"Queue is full. Please wait. Users in queue: {queued}.")
    assert err.value.status_code == 503 and err.value.headers == {"Retry-After": "5"}
    assert err.value.detail == "Queue is full. Please wait. Users in queue: 1."
    with second:  # left before any work: its place is freed
        pass
    assert pool.busy == 1


def test_rate_limit_is_a_token_bucket_per_key():
    now = [0.0]
    limiter = RateLimiter(12, 0.2, clock=lambda: now[0])
    assert [limiter.take("ip:auth") for _ in range(12)] == [0.0] * 12
    assert limiter.take("ip:auth") == pytest.approx(5.0) and limiter.take("ip:anon") == 0.0
    now[0] = 5.0
    assert limiter.take("ip:auth") == 0.0 and limiter.take("ip:auth") > 0


def test_settings_from_the_environment():
    args = Namespace(workers=2, queue_limit=8, max_duration=60.0, max_body_mb=64.0, api_key_file=None,
                     models_root="models", backend="auto")
    config = config_from(args, {"VOICELIB_API_KEYS": "a,b", "VOICE_DETECT_API_KEY": "peer",
                                "CORS_ORIGINS": "http://x.example, http://y.example", "VOICELIB_RATE_LIMIT": "12,0.2",
                                "VOICELIB_FAIK_AUTH": "key"})
    assert config.api_keys == ("a", "b", "peer") and config.cors_origins == ("http://x.example", "http://y.example")
    assert config.rate_limit == (12.0, 0.2) and config.faik_auth == "key"
    plain = config_from(args, {})
    assert (plain.api_keys, plain.cors_origins, plain.rate_limit, plain.faik_auth) == ((), (), None, "none")
    for bad in ({"VOICELIB_RATE_LIMIT": "fast"}, {"VOICELIB_FAIK_AUTH": "maybe"}):
        with pytest.raises(ValueError):
            config_from(args, bad)


# ---- over HTTP --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def peer_root(tmp_path_factory, save_tiny_model):
    base = tmp_path_factory.mktemp("peers")
    store.register(save_tiny_model(base / "en", calibration=(40.0, 0.0), seed=3), root=base / "models",
                   language="english", promote=True)
    return base / "models"


@pytest.fixture(scope="module")
def app_client(peer_root):
    """The app in process (for what needs a hand on the pool)."""
    config = ServeConfig(models_root=str(peer_root), api_keys=KEYS, workers=1, queue_limit=1)
    with TestClient(create_app(config, models=Models(config))) as client:
        yield client


def test_the_key_and_a_free_place_are_checked_before_the_body_is_read(app_client):
    pool = app_client.app.state.pool
    slots = [pool.admit(), pool.admit()]
    try:
        resp = app_client.post("/api/voice-detection", content=b"{not json", headers={"x-api-key": KEYS[0]})
        assert resp.status_code == 503 and resp.headers["retry-after"] == "5"
        assert resp.json() == {"status": "error", "message": "Queue is full. Please wait. Users in queue: 1."}
        assert app_client.get("/api/queue", headers={"x-api-key": KEYS[0]}).json() == {
            "status": "ok", "active": 1, "queued": 1, "maxConcurrent": 1, "maxQueue": 1}
    finally:
        for slot in slots:
            slot.release()
    huge = {"x-api-key": "wrong", "content-length": str(10**9)}
    resp = app_client.post("/api/voice-detection", content=b"{}", headers=huge)
    assert resp.status_code == 404 and resp.json() == {"status": "error", "message": "Not Found"}
    resp = app_client.post("/api/voice-detection", content=b"{}", headers={**huge, "x-api-key": KEYS[0]})
    assert resp.status_code == 413


def test_rate_limited_callers_get_429_with_a_key_and_404_without(app_client):
    app_client.app.state.limiter = RateLimiter(2, 0.001)
    try:
        key = {"x-api-key": KEYS[0]}
        assert [app_client.get("/api/queue", headers=key).status_code for _ in range(2)] == [200, 200]
        limited = app_client.get("/api/queue", headers=key)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
        assert limited.json() == {"status": "error", "message": "Too many requests. Please wait."}
        assert app_client.post("/api/voice-detection", headers={"x-api-key": "wrong"}, json={}).status_code == 404
    finally:
        app_client.app.state.limiter = None


def test_a_request_that_waited_says_where_it_queued(app_client):
    pool, gate = app_client.app.state.pool, threading.Event()
    blocker = pool.admit()
    pool.executor.submit(gate.wait, 30)  # the only worker is busy until the gate opens
    body = {"language": "English", "audioFormat": "wav", "audioBase64": base64.b64encode(_sine_wav(2.0)).decode()}
    with ThreadPoolExecutor(1) as run:
        future = run.submit(app_client.post, "/api/voice-detection", json=body, headers={"x-api-key": KEYS[0]})
        time.sleep(0.5)
        gate.set()
        resp = future.result(timeout=60)
    blocker.release()
    assert resp.status_code == 200, resp.text
    assert resp.json()["queue"]["position"] == 1 and resp.json()["queue"]["waitMs"] >= 400


def test_faik_auth_key_puts_analyze_audio_behind_the_key(peer_root):
    config = ServeConfig(models_root=str(peer_root), api_keys=KEYS, faik_auth="key")
    with TestClient(create_app(config, models=Models(config))) as client:
        files = {"audio_file": ("a.wav", _sine_wav(1.0))}
        refused = client.post("/audio/analyze-audio", files=files)
        assert refused.status_code == 401 and refused.json() == {"detail": "Not authenticated"}
        assert client.post("/audio/analyze-audio", files=files, headers={"x-api-key": KEYS[1]}).status_code == 200
        assert client.get("/audio/model-status").status_code == 200  # still open, as fAIk's


@pytest.fixture(scope="module")
def peer_server(peer_root, tmp_path_factory, serve_process):
    os.environ["VOICELIB_CORS_ORIGINS"] = ORIGIN
    try:
        srv = serve_process(peer_root, tmp_path_factory.mktemp("peer_tmp"), "--max-duration", "60", keys=KEYS)
    finally:
        del os.environ["VOICELIB_CORS_ORIGINS"]
    yield srv
    srv.stop()


def _faik_invariants(body: dict, cd: float, ov: float) -> None:
    assert list(body)[:6] == ["is_deepfake", "overall_confidence", "model_loaded", "total_chunks", "chunks", "summary"]
    assert list(body["summary"])[:7] == ["total_chunks", "ai_generated_chunks", "real_chunks", "ai_generated_ratio",
                                         "average_confidence", "chunk_duration_seconds", "overlap_ratio"]
    chunks, summary = body["chunks"], body["summary"]
    for i, c in enumerate(chunks):
        assert list(c)[:6] == ["chunk_index", "start_time", "end_time", "is_ai_generated", "confidence",
                               "class_probabilities"] and c["chunk_index"] == i
        p = c["class_probabilities"]
        assert list(p) == ["ai_generated", "real"] and p["ai_generated"] + p["real"] == pytest.approx(1)
        assert c["is_ai_generated"] == (p["ai_generated"] >= p["real"])
        assert c["confidence"] == max(p.values()) and 0.5 <= c["confidence"] <= 1
    n_ai = sum(c["is_ai_generated"] for c in chunks)
    assert summary["total_chunks"] == body["total_chunks"] == len(chunks)
    assert (summary["ai_generated_chunks"], summary["real_chunks"]) == (n_ai, len(chunks) - n_ai)
    assert summary["ai_generated_ratio"] == n_ai / len(chunks) and body["is_deepfake"] == (n_ai / len(chunks) > 0.5)
    assert body["overall_confidence"] == summary["average_confidence"] == pytest.approx(
        np.mean([c["confidence"] for c in chunks]))
    assert (summary["chunk_duration_seconds"], summary["overlap_ratio"]) == (cd, ov)


@pytest.mark.slow
def test_faik_client_requests_pass_without_a_key(peer_server):
    """test_audio_api.py's three requests, as it sends them (no key)."""
    url = peer_server.url
    status = httpx.get(url + "/audio/model-status")
    assert status.status_code == 200 and list(status.json())[:2] == ["model_loaded", "model_name"]
    info = httpx.get(url + "/audio/model-info")
    assert info.status_code == 200
    assert list(info.json())[:6] == ["model_name", "model_type", "feature_extractor_type", "model_config",
                                     "num_classes", "class_mapping"]
    assert info.json()["class_mapping"] == {"0": "AI Generated", "1": "Real"} and info.json()["num_classes"] == 2
    resp = httpx.post(url + "/audio/analyze-audio?chunk_duration=3.0&overlap=0.3", timeout=60,
                      files={"audio_file": ("test_audio.wav", _sine_wav(15.0), "audio/wav")})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    _faik_invariants(body, 3.0, 0.3)
    assert [(c["start_time"], c["end_time"]) for c in body["chunks"]] == [
        (0, 3), (2.1, 5.1), (4.2, 7.2), (6.3, 9.3), (8.4, 11.4), (10.5, 13.5)]
    silent = httpx.post(url + "/audio/analyze-audio", files={"audio_file": ("blob", _sine_wav(1.2, amplitude=0.0))},
                        timeout=60)  # no extension, all silent: still every window scored
    assert silent.status_code == 200 and [(c["start_time"], c["end_time"]) for c in silent.json()["chunks"]] == [(0, 5)]
    _faik_invariants(silent.json(), 5.0, 0.5)


@pytest.mark.slow
def test_faik_debug_audio(peer_server):
    resp = httpx.post(peer_server.url + "/audio/debug-audio", files={"audio_file": ("four.wav", _sine_wav(4.0))})
    body = resp.json()
    assert resp.status_code == 200 and list(body) == ["filename", "file_size_bytes", "audio_duration_seconds",
                                                      "audio_samples", "sample_rate", "chunk_analysis"]
    assert len(body["chunk_analysis"]) == 16 and body["chunk_analysis"]["1.0s_0%"] == {
        "chunk_duration": 1.0, "overlap": 0.0, "chunk_samples": 16000, "step_samples": 16000, "num_chunks": 4,
        "audio_duration": 4.0, "audio_samples": 64000}
    assert body["chunk_analysis"]["10.0s_70%"]["num_chunks"] == 1
    bad = httpx.post(peer_server.url + "/audio/debug-audio", files={"audio_file": ("a.wav", b"RIFF junk")})
    assert bad.status_code == 500 and bad.json()["detail"].startswith("Error debugging audio file: ")


@pytest.mark.slow
def test_faik_errors_answer_faiks_bodies(peer_server):
    url = peer_server.url + "/audio/analyze-audio"
    missing = httpx.post(url, files={"file_x": ("a.wav", b"x")})
    assert missing.status_code == 422 and missing.json() == {
        "message": "Validation error", "error_type": "ValidationError",
        "details": {"errors": [{"loc": ["body", "audio_file"], "msg": "field required", "type": "value_error.missing"}],
                    "body": "<FormData>"}}
    low = httpx.post(url + "?chunk_duration=0.5", files={"audio_file": ("a.wav", b"x")}).json()
    assert low["details"]["errors"] == [{"loc": ["query", "chunk_duration"], "type": "value_error.number.not_ge",
                                         "msg": "ensure this value is greater than or equal to 1.0",
                                         "ctx": {"limit_value": 1.0}}]
    junk = httpx.post(url, files={"audio_file": ("notes.txt", b"hello, not audio")}, timeout=30)
    assert junk.status_code == 500 and junk.json()["detail"].startswith("Error analyzing audio file: ")
    assert "/tmp" not in junk.text and "voicelib-serve" not in junk.text
    long = httpx.post(url, files={"audio_file": ("a.wav", _sine_wav(61.0))}, timeout=30)
    assert long.status_code == 413 and "limit of 60 s" in long.json()["detail"]
    assert httpx.get(peer_server.url + "/audio/nowhere").json() == {"detail": "Not Found"}
    wrong = httpx.get(url)
    assert wrong.status_code == 405 and wrong.json() == {"detail": "Method Not Allowed"} and "allow" in wrong.headers


@pytest.mark.slow
def test_voice_detection_client_requests(peer_server, speech_file):
    """smoke_test.sh's two requests, then the documented request with URL-safe unpadded base64."""
    url, key = peer_server.url, {"x-api-key": KEYS[0]}
    assert httpx.get(url + "/health").status_code == 200
    dummy = httpx.post(url + "/api/voice-detection", headers={**key, "Content-Type": "application/json"},
                       content=b'{"language":"English","audioFormat":"mp3","audioBase64":"AAA"}')
    assert dummy.status_code == 400 and dummy.json()["status"] == "error"
    mp3 = base64.urlsafe_b64encode(speech_file("speech.mp3").read_bytes()).decode().rstrip("=")
    body = json.dumps({"language": "English", "audioFormat": "mp3", "audioBase64": mp3})
    resp = httpx.post(url + "/api/voice-detection", content=body, headers=key, timeout=60)  # no Content-Type
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert list(out)[:5] == ["status", "language", "classification", "confidenceScore", "explanation"]
    assert out["language"] == "English" and out["classification"] in {"AI_GENERATED", "HUMAN"}
    assert (out["classification"] == "AI_GENERATED") == (out["confidenceScore"] >= 0.5)
    assert out["confidenceScore"] == pytest.approx(centred(out["aiScore"], out["threshold"]), abs=1e-6)
    percent = _percent(out["confidenceScore"])
    assert out["explanation"].startswith(f"Deep model estimated an AI probability of {percent}%")
    for headers in ({}, {"x-api-key": "wrong"}):
        for method, path in (("post", "/api/voice-detection"), ("get", "/api/queue")):
            refused = getattr(httpx, method)(url + path, headers=headers)
            assert refused.status_code == 404 and refused.json() == {"status": "error", "message": "Not Found"}
    queue = httpx.get(url + "/api/queue", headers=key).json()
    assert list(queue) == ["status", "active", "queued", "maxConcurrent", "maxQueue"] and queue["maxConcurrent"] == 2
    assert httpx.get(url + "/api/voice-detection", headers=key).status_code == 404  # a wrong method, as the peer
    assert httpx.post(url + "/api/voice-detection", headers=key, json={"language": "Tamil", "audioFormat": "mp3",
                                                                        "audioBase64": mp3}).json() == {
        "status": "error", "message": 'No model configured for language "Tamil".'}


@pytest.mark.slow
def test_cors_per_family(peer_server):
    url = peer_server.url
    pre = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-api-key"}
    ok = httpx.options(url + "/api/voice-detection", headers=pre)
    assert ok.status_code == 200 and ok.json() == {"status": "ok"}
    assert ok.headers["access-control-allow-origin"] == ORIGIN and ok.headers["vary"] == "Origin"
    assert ok.headers["access-control-allow-headers"] == "Content-Type, x-api-key"
    other = httpx.options(url + "/api/voice-detection", headers={**pre, "Origin": "http://evil.example"})
    assert other.status_code == 200 and "access-control-allow-origin" not in other.headers
    assert httpx.get(url + "/health").headers["access-control-max-age"] == "600"
    faik = httpx.options(url + "/audio/analyze-audio", headers={**pre, "Origin": "http://any.example"})
    assert faik.status_code == 200 and faik.text == "OK"
    assert faik.headers["access-control-allow-origin"] == "http://any.example"
    assert faik.headers["access-control-allow-headers"] == "x-api-key"
    simple = httpx.get(url + "/audio/model-status", headers={"Origin": "http://any.example"})
    assert simple.headers["access-control-allow-origin"] == "*"
    assert simple.headers["access-control-allow-credentials"] == "true"
    assert "access-control-allow-origin" not in httpx.get(url + "/audio/model-status").headers


def _peer_dir(name: str) -> Path:
    folder = os.environ.get(name)
    if not folder:
        pytest.skip(f"{name} is not set (a checkout of the peer)")
    return Path(folder)


@pytest.mark.slow
def test_faiks_own_script_passes(peer_server, tmp_path):
    script = (_peer_dir("FAIK_BACKEND_DIR") / "test_audio_api.py").read_text()
    (tmp_path / "t.py").write_text(script.replace("http://localhost:8000", peer_server.url))
    run = subprocess.run([sys.executable, str(tmp_path / "t.py")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "Audio API test passed!" in run.stdout, run.stdout[-2000:]


@pytest.mark.slow
def test_voice_ai_detections_smoke_test_passes(peer_server):
    script = _peer_dir("VOICE_AI_DETECTION_DIR") / "scripts" / "smoke_test.sh"
    run = subprocess.run(["bash", str(script), peer_server.url], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, VOICE_DETECT_API_KEY=KEYS[0]))
    assert run.returncode == 0 and run.stdout.strip().splitlines()[-1] == "HTTP 400", run.stdout[-2000:]
