"""The HTTP service, run for real: uvicorn in a subprocess on a free loopback port, called with httpx."""
import base64
import io
import os
import shutil
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import soundfile as sf

from voicelib.model import store
from voicelib.scoring.load import load_detector
from voicelib.serve.models import key_ok, read_api_keys
from voicelib.serve.shapes import explain

SR = 16000
KEYS = ("key-one-0123456789", "key-two-abcdefghij")


@pytest.fixture(scope="module")
def models_root(tmp_path_factory, save_tiny_model):
    base = tmp_path_factory.mktemp("serve")
    tiny = save_tiny_model(base / "tiny", calibration=(40.0, 0.0),  # the calibration spreads the random model's scores
                           families=("diphone", "neural", "vocoder"))
    store.register(tiny, root=base / "models", language="hindi", promote=True)
    store.register(save_tiny_model(base / "tiny_en", calibration=(40.0, 0.0), seed=3), root=base / "models",
                   language="english", promote=True)
    return base / "models"


@pytest.fixture(scope="module")
def server(models_root, tmp_path_factory, serve_process):
    srv = serve_process(models_root, tmp_path_factory.mktemp("server_tmp"), "--max-body-mb", "3", "--max-duration",
                        "60", keys=KEYS)
    yield srv
    srv.stop()


def _wav(seconds: float, *, sr: int = SR, seed: int = 0, amplitude: float = 0.1, fmt: str = "WAV") -> bytes:
    wave = (amplitude * np.random.default_rng(seed).standard_normal(int(seconds * sr))).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, wave, sr, format=fmt, subtype="PCM_16" if fmt in ("WAV", "FLAC") else None)
    return buffer.getvalue()


def _detect(server, data: bytes, *, language="Hindi", fmt="wav", key=KEYS[0]) -> httpx.Response:
    body = {"language": language, "audioFormat": fmt, "audioBase64": base64.b64encode(data).decode()}
    return httpx.post(server.url + "/api/voice-detection", json=body, headers={"x-api-key": key}, timeout=60)


def _analyze(server, data: bytes, *, name="clip.wav", key=KEYS[0], **params) -> httpx.Response:
    return httpx.post(server.url + "/v1/analyze", files={"file": (name, data)}, params=params,
                      headers={"x-api-key": key}, timeout=60)


def _error(resp: httpx.Response, code: int, word: str) -> None:
    assert resp.status_code == code, resp.text[:300]
    body = resp.json()
    assert body["status"] == "error" and word in body["message"], body
    assert "\n" not in body["message"] and "Traceback" not in resp.text


def test_api_keys_from_env_and_file_and_constant_time_check(tmp_path):
    (tmp_path / "keys").write_text("# ops keys\nfile-key\n\n  other-key \n")
    assert read_api_keys(env=" a, b,,a ", key_file=tmp_path / "keys") == ("a", "b", "file-key", "other-key")
    assert key_ok("b", ("a", "b")) and not key_ok("c", ("a", "b")) and not key_ok(None, ("a",))
    assert key_ok(None, ())  # no keys configured: open
    with pytest.raises(FileNotFoundError, match="API key file"):
        read_api_keys(key_file=tmp_path / "missing")


def test_explanation_is_one_sentence_from_the_chunk_scores():
    result = {"threshold": 0.5, "classification": "AI_GENERATED", "skippedChunks": 1,
              "chunks": [{"start": 0, "end": 3, "score": 0.9}, {"start": 1.5, "end": 4.5, "score": 0.2},
                         {"start": 3, "end": 6, "score": None, "skipped": "silent"}]}
    text = explain(result)
    assert text.startswith("1 of 2 chunks score above the threshold 0.50, 1 silent chunks skipped")
    assert "0-3 s at 0.90" in text and "1.5-4.5 s" not in text
    assert text.endswith("reads as AI-generated.") and text.count(". ") == 0


@pytest.mark.slow  # the server in a subprocess
def test_health_page_status_and_info(server):
    health = httpx.get(server.url + "/health").json()
    assert health == {"status": "ok", "models_loaded": 2, "auth_required": True}
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and "<canvas" in page.text and 'id="apikey"' in page.text
    assert "<script src" not in page.text and "https://" not in page.text  # self-contained, works offline
    headers = {"x-api-key": KEYS[1]}
    status = httpx.get(server.url + "/audio/model-status", headers=headers).json()
    assert status["model_loaded"] and set(status["languages"]) == {"english", "hindi"}
    assert status["workers"] == 2 and status["capacity"] == 10 and status["max_duration_s"] == 60
    info = httpx.get(server.url + "/audio/model-info", headers=headers).json()
    hindi = info["models"]["hindi"]
    assert info["languages"] == ["english", "hindi"] and hindi["label_index"] == {"0": "HUMAN", "1": "AI_GENERATED"}
    assert hindi["version"] == status["languages"]["hindi"]["version"] and 0 < hindi["threshold"] < 1
    assert {"training_data", "validation_metrics", "test_metrics", "labels"} <= set(hindi)
    assert hindi["final_fit"] is None  # trained on a train split (a final fit says where its threshold came from)


@pytest.mark.slow  # the server in a subprocess
def test_every_protected_endpoint_refuses_missing_and_wrong_keys(server):
    calls = [("post", "/v1/analyze", {"files": {"file": ("a.wav", b"x")}}), ("post", "/admin/reload", {})]
    for method, path, kw in calls:
        for headers in ({}, {"x-api-key": "wrong"}, {"x-api-key": KEYS[0][:-1]}):
            _error(getattr(httpx, method)(server.url + path, headers=headers, **kw), 401, "API key")
    for method, path, kw in (("post", "/api/voice-detection", {"json": {}}), ("get", "/api/queue", {})):
        for headers in ({}, {"x-api-key": "wrong"}):  # voice-ai-detection's answer to a bad key
            _error(getattr(httpx, method)(server.url + path, headers=headers, **kw), 404, "Not Found")


@pytest.mark.slow  # the server in a subprocess
def test_voice_detection_answers_the_compatible_shape(server, speech_file):
    mp3 = speech_file("speech.mp3").read_bytes()
    resp = _detect(server, mp3, fmt="mp3")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert list(body) == ["status", "language", "classification", "confidenceScore", "explanation", "aiScore",
                          "threshold", "verdict", "languageDistribution", "multiSpeakerScore", "familyDistribution"]
    assert body["status"] == "success" and body["language"] == "Hindi"
    assert body["classification"] in {"AI_GENERATED", "HUMAN"}
    assert 0 <= body["aiScore"] <= 1 and 0 <= body["confidenceScore"] <= 1 and 0 <= body["multiSpeakerScore"] <= 1
    assert sum(body["languageDistribution"].values()) == pytest.approx(1, abs=1e-3)
    assert set(body["familyDistribution"]) == {"diphone", "neural", "vocoder"}  # the attribution head's families
    assert sum(body["familyDistribution"].values()) == pytest.approx(1, abs=1e-3)
    assert body["explanation"].endswith(".") and "threshold" in body["explanation"]


@pytest.mark.slow  # the server in a subprocess
def test_analyze_audio_scores_a_multi_chunk_file_like_the_library(server, models_root, tmp_path):
    data = _wav(12.0)
    resp = _analyze(server, data, chunk_duration=5, overlap=0.5, language="hindi")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert list(body) == ["is_deepfake", "overall_confidence", "model_loaded", "total_chunks", "chunks", "summary"]
    assert body["total_chunks"] == 3 and body["model_loaded"] is True
    assert [(c["start_time"], c["end_time"]) for c in body["chunks"]] == [(0, 5), (2.5, 7.5), (5, 10)]  # fAIk's
    sf.write(tmp_path / "clip.wav", sf.read(io.BytesIO(data))[0][:10 * SR], SR, subtype="PCM_16")  # what they cover
    ref = load_detector(language="hindi", models_root=models_root, backend="torch").score_file(
        tmp_path / "clip.wav", chunk_duration=5, overlap=0.5)
    assert [c["ai_score"] for c in body["chunks"]] == pytest.approx(
        [c["score"] for c in ref["chunks"]], abs=1e-3)
    assert body["summary"]["ai_score"] == pytest.approx(ref["aiScore"], abs=1e-3)
    assert body["summary"]["family_distribution"] == pytest.approx(ref["familyDistribution"], abs=1e-3)
    assert body["summary"]["classification"] == ref["classification"]
    other = _analyze(server, data, chunk_duration=2.5, overlap=0.0).json()  # a length without an onnx session
    assert other["total_chunks"] == 4 and other["summary"]["language"] == "english"
    assert other["summary"]["family_distribution"] is None  # the English model has no family head


@pytest.mark.slow  # the server in a subprocess
def test_bad_audio_and_bad_requests_get_the_right_codes(server):
    silent = _wav(2.0, amplitude=0.0)
    _error(_detect(server, b"", fmt="wav"), 400, "audioBase64 is required")
    _error(httpx.post(server.url + "/api/voice-detection", headers={"x-api-key": KEYS[0]}, timeout=30,
                      json={"language": "Hindi", "audioFormat": "mp3", "audioBase64": "@@not base64@@"}), 400, "base64")
    _error(_detect(server, b"RIFF garbage that is not audio" * 20), 400, "not a readable audio")
    _error(_detect(server, silent), 400, "silent")
    _error(_detect(server, _wav(1.0), fmt="xyz"), 400, "Unsupported audio format")
    _error(_analyze(server, b"hello", name="notes.txt"), 400, "not a readable audio")
    assert _analyze(server, silent).status_code == 200  # fAIk scores every window, silent ones too
    _error(_detect(server, _wav(1.0), language="Klingon"), 400, "Unsupported language")
    _error(_detect(server, _wav(1.0), language="Tamil"), 500, "No model configured for language")
    _error(_analyze(server, _wav(1.0), chunk_duration=0.5), 422, "chunk_duration")
    _error(httpx.post(server.url + "/api/voice-detection", json={"language": "Hindi"}, headers={"x-api-key": KEYS[0]}),
           400, "audioFormat is required")
    _error(_analyze(server, _wav(70.0, sr=8000)), 413, "limit of 60 s")  # 1.1 MB, under the body limit
    _error(_detect(server, _wav(110.0)), 413, "limit of 4259840 bytes")  # 3.5 MB of WAV is 4.7 MB of base64
    def chunked():  # a valid multipart upload of 5 MB, sent without a Content-Length
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        yield from (b"x" * 65536 for _ in range(80))
        yield b"\r\n--b--\r\n"
    _error(httpx.post(server.url + "/v1/analyze", content=chunked(), timeout=30,
                      headers={"x-api-key": KEYS[0], "content-type": "multipart/form-data; boundary=b"}), 413, "limit")
    _error(httpx.get(server.url + "/nowhere"), 404, "Not Found")
    assert server.temp_leftovers() == []
    assert httpx.get(server.url + "/health").status_code == 200  # still serving


@pytest.mark.slow  # the server in a subprocess
def test_concurrent_requests_are_all_answered_the_same(server):
    data = _wav(8.0, seed=5)
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda i: _analyze(server, data, key=KEYS[i % 2]), range(12)))
    assert [r.status_code for r in responses] == [200] * 12
    assert len({r.json()["summary"]["ai_score"] for r in responses}) == 1
    assert server.temp_leftovers() == []
    assert "UklGR" not in server.log.read_text()  # the audio (base64 "RIFF...") never reaches the log


@pytest.fixture(scope="module")
def small_server(tmp_path_factory, save_tiny_model, serve_process):
    """One scoring thread and no queue, over its own store (the reload test changes it)."""
    base = tmp_path_factory.mktemp("small")
    store.register(save_tiny_model(base / "m1", calibration=(40.0, 0.0)), root=base / "models", language="hindi")
    srv = serve_process(base / "models", base / "tmp", "--workers", "1", "--queue-limit", "0", keys=KEYS)
    srv.base = base
    yield srv
    srv.stop()


@pytest.mark.slow  # the server in a subprocess
def test_a_full_pool_answers_503(small_server):
    data = _wav(240.0)  # a few hundred ms of scoring: the requests overlap
    with ThreadPoolExecutor(6) as pool:
        responses = pool.map(lambda _: _analyze(small_server, data, chunk_duration=3), range(6))
        codes = sorted(r.status_code for r in responses)
    assert codes[0] == 200 and codes[-1] == 503 and set(codes) == {200, 503}
    assert small_server.temp_leftovers() == []


@pytest.mark.slow  # the server in a subprocess
def test_reload_swaps_in_a_promoted_model_and_keeps_serving_when_one_is_broken(small_server, save_tiny_model):
    url, headers, data = small_server.url, {"x-api-key": KEYS[0]}, _wav(6.0, seed=2)
    before = httpx.get(url + "/audio/model-info", headers=headers).json()["models"]["hindi"]["version"]
    first = _detect(small_server, data).json()["aiScore"]
    second = store.register(save_tiny_model(small_server.base / "m2", calibration=(40.0, 0.0), seed=7),
                            root=small_server.base / "models", language="hindi")
    assert _detect(small_server, data).json()["aiScore"] == first  # not reloaded per request
    reloaded = httpx.post(url + "/admin/reload", headers=headers, timeout=120).json()
    assert reloaded == {"status": "success", "languages": {"hindi": second.name}, "errors": {}}
    assert _detect(small_server, data).json()["aiScore"] != first
    broken = small_server.base / "broken"
    shutil.copytree(second, broken)
    (broken / "model.safetensors").write_bytes(b"garbage")
    store.register(broken, root=small_server.base / "models", language="hindi")
    partial = httpx.post(url + "/admin/reload", headers=headers, timeout=120).json()
    assert partial["status"] == "partial" and "hindi" in partial["errors"]
    assert partial["languages"] == {"hindi": second.name} != {"hindi": before}
    assert _detect(small_server, data).status_code == 200


def _browser():
    """A headless Chromium driven by selenium, or skip."""
    webdriver = pytest.importorskip("selenium.webdriver")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1000,1100"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(driver_path), options=options)


def _visible(browser, element_id: str, *, timeout: float = 60.0):
    """Wait for an element to show; on timeout fail with what the page says."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(browser, timeout).until(ec.visibility_of_element_located((By.ID, element_id)))
    except TimeoutException:
        said = {i: browser.find_element(By.ID, i).text for i in ("status", "error")}
        logs = browser.get_log("browser") if hasattr(browser, "get_log") else []
        pytest.fail(f"#{element_id} never showed; page says {said}; console {logs[-5:]}")


@pytest.mark.slow  # the server in a subprocess and Chromium
def test_the_page_scores_an_upload_in_headless_chromium(server, speech_file, tmp_path):
    from selenium.webdriver.common.by import By

    speech = sf.read(speech_file("s.wav"))[0]
    noise = 0.05 * np.random.default_rng(0).standard_normal(3 * SR)
    wave = np.concatenate([speech, noise, speech, noise, speech]).astype(np.float32)  # scores that vary
    clip = tmp_path / "speech.flac"
    sf.write(clip, wave, SR)
    browser = _browser()
    try:
        browser.get(server.url + "/")
        _visible(browser, "apikey", timeout=20).send_keys(KEYS[0])
        browser.find_element(By.ID, "file").send_keys(str(clip))
        _visible(browser, "result")
        label = browser.find_element(By.ID, "classification").text
        assert label in {"AI-generated", "Human", "Inconclusive"}
        assert "against threshold" in browser.find_element(By.ID, "score").text
        assert "chunks score above the threshold" in browser.find_element(By.ID, "explanation").text
        drawn = browser.execute_script("const c = document.getElementById('timeline');"
                                       "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
                                       "let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n;")
        assert drawn > 1000  # the timeline was drawn
        browser.save_screenshot(str(tmp_path / "page.png"))
        assert (tmp_path / "page.png").stat().st_size > 10000
        if os.environ.get("VOICELIB_SCREENSHOT"):
            shutil.copy(tmp_path / "page.png", os.environ["VOICELIB_SCREENSHOT"])
        browser.find_element(By.ID, "apikey").clear()
        browser.find_element(By.ID, "apikey").send_keys("wrong")
        browser.find_element(By.ID, "file").send_keys(str(clip))
        _visible(browser, "error")
        assert "401" in browser.find_element(By.ID, "error").text
    finally:
        browser.quit()


@pytest.mark.slow  # the server in a subprocess
def test_a_server_without_models_starts_and_answers_503(tmp_path, serve_process):
    srv = serve_process(tmp_path / "empty", tmp_path / "tmp", keys=KEYS)
    try:
        assert httpx.get(srv.url + "/health").json()["models_loaded"] == 0
        _error(_analyze(srv, _wav(1.0)), 503, "no model is loaded")
        status = httpx.get(srv.url + "/audio/model-status", headers={"x-api-key": KEYS[0]}).json()
        assert status["model_loaded"] is False and status["languages"] == {}
    finally:
        srv.stop()
