"""edge-tts source: when the service cannot be reached it fails fast with SourceUnavailable, keeping what it has."""
from __future__ import annotations

import pytest

from voicelib.data.sources import edge, online
from voicelib.errors import SourceUnavailable


def test_edge_unreachable_raises_partial_collection(tmp_path, free_port):
    proxy = f"http://127.0.0.1:{free_port()}"  # every connection goes through a proxy that refuses it
    with pytest.raises(online.PartialCollection, match=r"edge-tts \(hi-IN-\w+Neural\): unreachable") as info:
        edge.collect(tmp_path, language="hindi", seed=0, texts=["नमस्ते", "धन्यवाद"], proxy=proxy, timeout=1,
                     retries=1, backoff=0.01, min_interval=0)
    assert isinstance(info.value, SourceUnavailable)
    assert info.value.rows == [] and info.value.remaining == ["नमस्ते", "धन्यवाद"]
    assert not list(tmp_path.glob("*.flac"))


def test_retries_back_off_then_give_up():
    calls, sleeps = [], []

    def flaky():
        calls.append(1)
        raise ConnectionError("refused")

    with pytest.raises(SourceUnavailable, match="svc: unreachable after 3 attempts"):
        online.with_retries(flaky, what="svc", retries=2, backoff=1.0, sleep=sleeps.append)
    assert len(calls) == 3 and len(sleeps) == 2 and 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0
    assert online.with_retries(lambda: 7, what="svc") == 7


def test_pacer_keeps_min_interval():
    waits = []
    pacer = online.Pacer(10.0, sleep=waits.append)
    pacer.wait()
    pacer.wait()
    assert waits and 9.0 < waits[0] <= 10.0


def test_say_once():
    online.forget_said()
    assert online.say_once("k", "first") and not online.say_once("k", "again")
