"""Audio cache: decode once, then memory-mapped reads; datasets built on it do not decode again."""
from __future__ import annotations

import numpy as np
import pandas as pd

from voicelib.audio import decode
from voicelib.audio.cache import AudioCache
from voicelib.data.dataset import SegmentDataset


def test_second_get_reads_the_cache_not_the_decoder(speech_file, tmp_path):
    path = speech_file("a.flac")
    cache = AudioCache(tmp_path / "cache", 16000)
    first = cache.get(path, "abc123")
    second = cache.get(path, "abc123")
    assert cache.decoded == 1
    np.testing.assert_array_equal(np.asarray(second), decode.load(path, sr=16000))
    assert isinstance(first, np.memmap) and not second.flags.writeable
    assert cache.path_for("abc123").is_file()
    assert AudioCache(tmp_path / "cache", 16000).warm([(str(path), "abc123")], progress=False) == 0


def test_rate_is_part_of_the_key_and_hash_defaults_to_content(speech_file, tmp_path):
    path = speech_file("b.wav")
    eight = AudioCache(tmp_path / "cache", 8000).get(path, "h")
    sixteen = AudioCache(tmp_path / "cache", 16000).get(path, "h")
    assert abs(len(sixteen) - 2 * len(eight)) <= 2
    cache = AudioCache(tmp_path / "cache", 16000)
    cache.get(path)  # no manifest hash: the file's content hash is the key
    cache.get(path, None)
    assert cache.decoded == 1


def test_epochs_after_the_first_do_not_decode(speech_file, tmp_path):
    rows = [{"path": str(speech_file(f"{i}.flac")), "label": "ai" if i % 2 else "human", "language": "english",
             "speaker": f"s{i}", "hash": f"h{i}", "duration": 2.5, "split": "train"} for i in range(4)]
    cache = AudioCache(tmp_path / "cache", 16000)
    dataset = SegmentDataset(pd.DataFrame(rows), cache, segment_seconds=1.0, train=True)
    for epoch in (1, 2):
        dataset.set_epoch(epoch)
        items = [dataset[i] for i in range(len(dataset))]
        assert all(item["wave"].shape == (16000,) for item in items)
    assert cache.decoded == 4
