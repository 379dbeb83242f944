"""FLEURS source against a local stand-in of the Hugging Face hub (HF_ENDPOINT, the hub's exact URL layout)."""
from __future__ import annotations

import hashlib
import io
import tarfile

import pytest
import soundfile as sf

from voicelib.data import espeak as engine
from voicelib.data.sources import fleurs

pytestmark = pytest.mark.skipif(not engine.is_available(), reason="espeak-ng (espeakng-loader) is not available")
SENTENCES = {"101": "आज मौसम अच्छा है।", "102": "कल बारिश होगी।", "103": "हम घर जा रहे हैं।"}


def _wav(text: str) -> bytes:
    """A short espeak-ng utterance as WAV bytes (FLEURS ships 16 kHz WAVs)."""
    wave, sr = engine.synthesize(text, language="hi")
    buffer = io.BytesIO()
    sf.write(buffer, wave, sr, format="WAV")
    return buffer.getvalue()


def _archive() -> bytes:
    """dev.tar.gz with three good members, a path-traversal member and a symlink, both named in the TSV."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        add("../../evil.wav", _wav("बुरा"))
        link = tarfile.TarInfo("dev/link.wav")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
        for sid, text in SENTENCES.items():
            for reader in ("a", "b"):
                add(f"dev/{sid}{reader}.wav", _wav(text))
    return buffer.getvalue()


@pytest.fixture
def hub(hub_standin):
    """The stand-in hub with a dev split of 6 clips (3 sentences x 2 readers) plus 2 unsafe entries."""
    lines = [f"{sid}\t{sid}{r}.wav\t{text}\t{text}\tw o r d s\t32000\t{'FEMALE' if r == 'a' else 'MALE'}"
             for sid, text in SENTENCES.items() for r in ("a", "b")]
    lines += ["900\tevil.wav\tx\tx\tx\t1\tMALE", "901\tlink.wav\tx\tx\tx\t1\tMALE", "malformed line"]
    return hub_standin("datasets/google/fleurs", {"data/hi_in/dev.tsv": ("\n".join(lines) + "\n").encode(),
                                                  "data/hi_in/audio/dev.tar.gz": _archive()})


def test_fleurs_downloads_extracts_safely_and_resumes(tmp_path, hub):
    out = tmp_path / "work" / "audio" / "fleurs"
    rows = fleurs.collect(out, language="hindi", seed=0, splits=("dev",), cache_dir=hub.cache, retries=0)
    names = sorted(r["path"].rsplit("/", 1)[1] for r in rows)
    assert names == sorted(f"{sid}{r}.flac" for sid in SENTENCES for r in "ab")  # unsafe members never extracted
    assert not list(tmp_path.rglob("evil*")) and not list(tmp_path.rglob("link*"))
    row = next(r for r in rows if r["path"].endswith("101a.flac"))
    assert (row["label"], row["engine"], row["source"], row["text"]) == ("human", "human", "fleurs", SENTENCES["101"])
    assert row["group"] == "fleurs_hi_in_101" and row["speaker"] == "fleurs_hi_in_dev_female"
    assert sf.info(row["path"]).samplerate == 16000
    assert ("GET", "data/hi_in/audio/dev.tar.gz", "") in hub.log
    hub.log.clear()
    assert fleurs.collect(out, language="hindi", seed=0, splits=("dev",), cache_dir=hub.cache, retries=0) == rows
    assert not any("tar.gz" in name for _, name, _ in hub.log)  # clips exist: the archive is not fetched again
    assert (out / "hi_in" / "dev" / "unavailable.json").is_file()  # unsafe entries remembered, not retried


def test_fleurs_limit_takes_a_seeded_subset(tmp_path, hub):
    a = fleurs.collect(tmp_path / "a", language="hi", limit=3, seed=0, splits=("dev",), cache_dir=hub.cache, retries=0)
    b = fleurs.collect(tmp_path / "b", language="hi", limit=3, seed=0, splits=("dev",), cache_dir=hub.cache, retries=0)
    assert 1 <= len(a) <= 3 and [r["hash"] for r in a] == [r["hash"] for r in b]


def test_partial_download_is_resumed_with_a_range_request(tmp_path, hub):
    data = hub.files["data/hi_in/audio/dev.tar.gz"]
    blobs = hub.cache / "datasets--google--fleurs" / "blobs"
    blobs.mkdir(parents=True)
    (blobs / f"{hashlib.sha256(data).hexdigest()}.incomplete").write_bytes(data[: len(data) // 2])
    rows = fleurs.collect(tmp_path / "out", language="hi", seed=0, splits=("dev",), cache_dir=hub.cache, retries=0)
    assert len(rows) == 6
    assert ("GET", "data/hi_in/audio/dev.tar.gz", f"bytes={len(data) // 2}-") in hub.log


def test_unreachable_hub_is_source_unavailable(tmp_path, monkeypatch, free_port):

    from voicelib.errors import SourceUnavailable

    port = free_port()
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    with pytest.raises(SourceUnavailable, match="FLEURS download"):
        fleurs.collect(tmp_path, language="hi", seed=0, splits=("dev",), endpoint=f"http://127.0.0.1:{port}",
                       cache_dir=tmp_path / "c", retries=0, timeout=2)
