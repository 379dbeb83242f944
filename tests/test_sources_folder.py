"""Local folders <root>/<language>/{human,ai}/*: rows point at the user's files in place, root manifest honoured."""
from __future__ import annotations

import os

import pandas as pd
import pytest

from voicelib.data.sources import folder


def _snapshot(root):
    """Bytes and modification times of every file under root."""
    return {p: (p.read_bytes(), os.stat(p).st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def test_folder_rows_use_root_manifest_and_leave_files_alone(tmp_path, speech_file):
    root = tmp_path / "mine"
    (root / "hindi" / "human").mkdir(parents=True)
    (root / "hindi" / "ai").mkdir(parents=True)
    for name in ("alice_01.wav", "alice_02.flac", "bob-7.mp3"):
        speech_file(name).rename(root / "hindi" / "human" / name)
    speech_file("tts.ogg").rename(root / "hindi" / "ai" / "tts.ogg")
    (root / "hindi" / "human" / "notes.txt").write_text("not audio")
    pd.DataFrame([{"path": "hindi/ai/tts.ogg", "speaker": "voiceX", "group": "g1", "text": "hello there",
                   "engine": "coqui", "source": "my_tts"}]).to_csv(root / "manifest.csv", index=False)
    before = _snapshot(root)
    rows = folder.collect(None, language="hi", seed=0, root=root)
    assert _snapshot(root) == before
    by_name = {r["path"].rsplit("/", 1)[1]: r for r in rows}
    assert set(by_name) == {"alice_01.wav", "alice_02.flac", "bob-7.mp3", "tts.ogg"}
    assert by_name["alice_01.wav"]["speaker"] == by_name["alice_02.flac"]["speaker"] == "mine_alice"
    assert by_name["bob-7.mp3"]["speaker"] == "mine_bob" and by_name["bob-7.mp3"]["engine"] == "human"
    ai = by_name["tts.ogg"]
    assert (ai["label"], ai["speaker"], ai["group"], ai["text"], ai["engine"], ai["source"]) == \
        ("ai", "voiceX", "g1", "hello there", "coqui", "my_tts")
    assert all(os.path.isabs(r["path"]) and r["duration"] > 0 and r["hash"] for r in rows)


def test_folder_limit_is_a_seeded_sample_per_label(tmp_path, speech_file):
    human = tmp_path / "r" / "telugu" / "human"
    human.mkdir(parents=True)
    for i in range(6):
        speech_file(f"s{i}.wav").rename(human / f"s{i}.wav")
    a = folder.collect(None, language="telugu", limit=3, seed=1, root=tmp_path / "r")
    assert len(a) == 3 and a == folder.collect(None, language="telugu", limit=3, seed=1, root=tmp_path / "r")


def test_missing_folder_says_how_to_lay_it_out(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"hindi/human"):
        folder.collect(None, language="hindi", root=tmp_path / "nope")
