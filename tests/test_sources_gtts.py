"""gTTS source against a local stand-in of Google's batchexecute endpoint; offline fallback to espeak-ng."""
from __future__ import annotations

import base64
import http.server
import io
import json
import logging
import threading
import urllib.parse

import numpy as np
import pytest
import soundfile as sf

from voicelib.data import espeak as engine
from voicelib.data.collect import CollectConfig, collect_all
from voicelib.data.sources import gtts, online
from voicelib.errors import SourceUnavailable

pytestmark = pytest.mark.skipif(not engine.is_available(), reason="espeak-ng (espeakng-loader) is not available")
TEXTS = ["आज मौसम अच्छा है।", "कल बारिश होगी।"]


class _Google(http.server.BaseHTTPRequestHandler):
    """Answers POST /_/TranslateWebserverUi/data/batchexecute like Google: an MP3 in base64 inside an RPC reply."""

    requests: list[tuple[str, str]] = []

    def do_POST(self):  # noqa: N802 - http.server naming
        body = urllib.parse.unquote(self.rfile.read(int(self.headers["Content-Length"])).decode())
        rpc = json.loads(body[len("f.req="):].rstrip("&"))
        text, lang = json.loads(rpc[0][0][1])[:2]
        self.requests.append((self.path, text))
        wave, sr = engine.synthesize(text, language=lang)
        mp3 = io.BytesIO()
        sf.write(mp3, wave, sr, format="MP3")
        payload = base64.b64encode(mp3.getvalue()).decode()
        reply = f')]}}\'\n\n[["wrb.fr","jQ1olc","[\\"{payload}\\"]",null,null,null,"generic"]]\n'.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


@pytest.fixture
def google():
    """A threaded local stand-in server; yields its base URL."""
    _Google.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Google)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_gtts_collects_from_stand_in_and_resumes(tmp_path, google):
    rows = gtts.collect(tmp_path, language="hindi", seed=0, texts=TEXTS, base_url=google, min_interval=0, timeout=5)
    assert [text for _, text in _Google.requests] == TEXTS
    assert all(path == "/" + gtts.API_PATH for path, _ in _Google.requests)
    assert [r["text"] for r in rows] == TEXTS and {r["engine"] for r in rows} == {"gtts"}
    assert {r["speaker"] for r in rows} == {"gtts_hi_com"}
    wave, sr = sf.read(rows[0]["path"])
    assert sr == 16000 and sf.info(rows[0]["path"]).format == "FLAC" and np.abs(wave).max() > 0.05
    again = gtts.collect(tmp_path, language="hindi", seed=0, texts=TEXTS, base_url=google, min_interval=0)
    assert again == rows and len(_Google.requests) == 2  # resumed: no new request


def test_gtts_unreachable_raises_partial_collection(tmp_path, free_port):
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(online.PartialCollection, match="gTTS") as info:
        gtts.collect(tmp_path, language="hi", seed=0, texts=TEXTS, base_url=url, retries=1, backoff=0.01,
                     timeout=2, min_interval=0)
    assert isinstance(info.value, SourceUnavailable) and info.value.remaining == TEXTS and info.value.rows == []


def test_collect_all_falls_back_to_espeak_and_says_so_once(tmp_path, speech_file, monkeypatch, caplog, free_port):
    online.forget_said()
    root = tmp_path / "mine"
    (root / "hindi" / "human").mkdir(parents=True)
    for i, text in enumerate(TEXTS):
        speech_file(f"spk_{i}.wav", language="hi", text=text).rename(root / "hindi" / "human" / f"spk_{i}.wav")
    (root / "manifest.csv").write_text("path,text\n"
                                       + "".join(f"hindi/human/spk_{i}.wav,{t}\n" for i, t in enumerate(TEXTS)),
                                       encoding="utf-8")
    monkeypatch.setenv(gtts.URL_ENV, f"http://127.0.0.1:{free_port()}")
    options = {"gtts": {"retries": 0, "timeout": 2, "min_interval": 0}}
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            config = CollectConfig(human_sources=[], tts_engines=["gtts"], local_dirs=[root], seed=0, options=options)
            df = collect_all(tmp_path / "data", config, language="hindi")
    said = [r.message for r in caplog.records if "falling back to espeak-ng" in r.message]
    assert len(said) == 1 and "gtts unreachable" in said[0]
    ai = df[df["label"] == "ai"]
    assert set(ai["engine"]) == {"espeak-ng"} and sorted(ai["text"]) == sorted(TEXTS)
    assert len(df) == 4 and df["path"].is_unique
