"""Streaming detection: block-by-block decoding gives the whole-file windows and scores, in bounded memory."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voicelib.audio import decode
from voicelib.errors import AudioError, AudioTooLong
from voicelib.scoring.load import load_detector
from voicelib.scoring.stream import WindowCutter
from voicelib.scoring.windows import chunk_bounds

SR = 16000
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, save_tiny_model):
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny", calibration=(30.0, 0.0))


@pytest.fixture(scope="module")
def detector(tiny_model):
    return load_detector(tiny_model, backend="torch")


def _noise_file(path, *, duration, sr, channels=1, silent=(10.0, 16.0), seed=0):
    """Gaussian noise with one digital-silence stretch, written in the format of the extension."""
    rng = np.random.default_rng(seed)
    wave = (0.1 * rng.standard_normal((int(duration * sr), channels))).astype(np.float32)
    wave[int(silent[0] * sr):int(silent[1] * sr)] = 0.0
    sf.write(path, wave if channels > 1 else wave[:, 0], sr)
    return path


def _same(a, b, *, tol=1e-5):
    assert [(c["start"], c["end"]) for c in a["chunks"]] == [(c["start"], c["end"]) for c in b["chunks"]]
    assert [c.get("skipped") for c in a["chunks"]] == [c.get("skipped") for c in b["chunks"]]
    assert [c["score"] for c in a["chunks"]] == pytest.approx([c["score"] for c in b["chunks"]], abs=tol)
    assert a["aiScore"] == pytest.approx(b["aiScore"], abs=tol) and a["duration"] == b["duration"]
    assert a["classification"] == b["classification"] and a["skippedChunks"] == b["skippedChunks"]


@pytest.mark.parametrize("n, block, length, hop", [(1000, 7, 100, 50), (1000, 333, 100, 100), (950, 64, 100, 30),
                                                    (60, 10, 100, 50), (100, 100, 100, 50), (101, 1, 100, 50)])
def test_window_cutter_gives_the_chunk_bounds_and_samples(n, block, length, hop):
    wave = np.arange(n, dtype=np.float32)
    cutter = WindowCutter(100, chunk_duration=length / 100, overlap=1 - hop / length)
    got = [(s, e, seg.copy()) for s, e, seg in cutter.cut(wave[i:i + block] for i in range(0, n, block))]
    assert [(s, e) for s, e, _ in got] == chunk_bounds(n, 100, chunk_duration=length / 100, overlap=1 - hop / length)
    assert all(np.array_equal(seg, wave[s:e]) for s, e, seg in got) and cutter.n_samples == n


@pytest.mark.parametrize("sr, channels, chunk, overlap",
                         [(SR, 1, 3.0, 0.5), (44100, 1, 5.0, 0.0), (22050, 2, 3.0, 0.75)])
def test_streaming_equals_the_whole_file_path_on_a_multi_chunk_file(detector, tmp_path, sr, channels, chunk, overlap):
    path = _noise_file(tmp_path / "long.flac", duration=47.3, sr=sr, channels=channels)
    whole = detector.score_file(path, chunk_duration=chunk, overlap=overlap)  # short: the batched whole-file path
    streamed = detector.score_stream(path, chunk_duration=chunk, overlap=overlap)
    assert len(streamed["chunks"]) >= 10 and streamed["skippedChunks"] >= 1
    _same(whole, streamed)
    assert len({c["score"] for c in streamed["chunks"] if c["score"] is not None}) > 5  # real, varying scores


def test_score_files_streams_long_files_and_keeps_the_batch_for_short_ones(tiny_model, tmp_path):
    det = load_detector(tiny_model, backend="torch")
    reference = det.score_files([_noise_file(tmp_path / "a.wav", duration=20.0, sr=SR),
                                 _noise_file(tmp_path / "b.wav", duration=2.0, sr=SR, silent=(0, 0), seed=1)])
    det.stream_above = 10.0
    calls = []
    real = det.score_stream
    det.score_stream = lambda path, **kw: calls.append(Path(path).name) or real(path, **kw)
    mixed = det.score_files([tmp_path / "a.wav", tmp_path / "b.wav"])
    assert calls == ["a.wav"]
    for r, m in zip(reference, mixed):
        _same(r, m)


def test_max_duration_refuses_long_files_on_both_paths(tiny_model, tmp_path):
    path = _noise_file(tmp_path / "a.wav", duration=12.0, sr=SR)
    det = load_detector(tiny_model, backend="torch", max_duration=10.0)
    assert "longer than max_duration=10 s" in det.score_file(path)["error"]
    with pytest.raises(AudioTooLong):
        det.score_stream(path)
    with pytest.raises(AudioTooLong):
        list(decode.stream_blocks(path, max_duration=10.0))
    with pytest.raises(ValueError, match="max_duration"):
        load_detector(tiny_model, max_duration=0)


def test_audio_load_too_long_message_names_options_that_exist(tmp_path):
    path = _noise_file(tmp_path / "a.wav", duration=3.0, sr=SR)
    with pytest.raises(AudioTooLong, match="--max-duration") as info:
        decode.load(path, max_duration=2.0)
    assert "raise max_duration" not in str(info.value)
    assert decode.load(path, max_duration=None).size == 3 * SR


@pytest.mark.slow  # three CLI subprocesses
def test_cli_max_duration(tiny_model, tmp_path):
    path = _noise_file(tmp_path / "a.wav", duration=12.0, sr=SR)
    def run(*extra):
        return subprocess.run([sys.executable, "-m", "voicelib", "detect", str(path), "--model", str(tiny_model),
                               "--backend", "torch", *extra], capture_output=True, text=True, cwd=REPO)

    refused, ok = run("--max-duration", "10"), run()
    assert refused.returncode == 1 and "max_duration=10" in json.loads(refused.stdout)[0]["error"]
    assert ok.returncode == 0 and len(json.loads(ok.stdout)[0]["chunks"]) == 7
    assert run("--max-duration", "-1").returncode == 2


def test_streaming_refuses_bad_audio_with_one_line_reasons(detector, tmp_path):
    sf.write(tmp_path / "silent.wav", np.zeros(20 * SR, np.float32), SR)
    good = _noise_file(tmp_path / "good.wav", duration=6.0, sr=SR)
    (tmp_path / "cut.wav").write_bytes(good.read_bytes()[: len(good.read_bytes()) // 3])
    (tmp_path / "junk.flac").write_bytes(b"not audio" * 100)
    sf.write(tmp_path / "tiny.wav", np.full(160, 0.1, np.float32), SR)
    for name, word in [("silent.wav", "silent"), ("cut.wav", "truncated"), ("junk.flac", "not a readable audio"),
                       ("tiny.wav", "shorter than")]:
        with pytest.raises(AudioError, match=word) as info:
            detector.score_stream(tmp_path / name)
        assert "\n" not in info.value.reason


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_ffmpeg_formats_stream_through_a_pipe(detector, tmp_path):
    wav = _noise_file(tmp_path / "a.wav", duration=14.0, sr=SR)
    m4a = tmp_path / "a.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(wav), "-c:a", "aac", "-b:a", "128k", str(m4a)], check=True)
    whole, streamed = detector.score_file(m4a), detector.score_stream(m4a)
    bounds = [[(c["start"], c["end"]) for c in r["chunks"]][:8] for r in (whole, streamed)]
    assert bounds[0] == bounds[1]
    assert abs(whole["duration"] - streamed["duration"]) < 0.1
    assert whole["aiScore"] == pytest.approx(streamed["aiScore"], abs=0.05)
    (tmp_path / "bad.m4a").write_bytes(b"\x00" * 4000)
    with pytest.raises(AudioError, match="ffmpeg cannot decode"):
        detector.score_stream(tmp_path / "bad.m4a")


# Peak RSS of the scoring process itself: VmHWM, not getrusage's ru_maxrss, which Linux carries over from the
# parent at fork (the pytest process, already hundreds of MB) through exec.
MEMORY_PROBE = """
import re, sys
from voicelib.__main__ import main
code = main(sys.argv[1:])
peak = re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1)
print("MAXRSS_KB", peak, "CODE", code, file=sys.stderr)
"""


@pytest.mark.slow  # a 20-minute file scored in a subprocess
@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux /proc for the peak RSS")
def test_a_twenty_minute_file_streams_in_bounded_memory(tiny_model, tmp_path):
    path, sr, minutes = tmp_path / "long.flac", SR, 20
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", sr, 1, format="FLAC", subtype="PCM_16") as out:  # written in blocks too
        for _ in range(minutes * 6):
            out.write((0.1 * rng.standard_normal(10 * sr)).astype(np.float32))
    proc = subprocess.run([sys.executable, "-c", MEMORY_PROBE, "detect", str(path), "--model", str(tiny_model),
                           "--format", "csv"], capture_output=True, text=True, cwd=REPO, timeout=600)
    rss_kb, code = (int(v) for v in proc.stderr.split("MAXRSS_KB")[1].split()[::2])
    assert code == 0, proc.stderr[-500:]
    row = proc.stdout.splitlines()[1].split(",")
    assert float(row[7]) == minutes * 60  # duration column
    assert rss_kb / 1024 < 500, f"peak RSS {rss_kb / 1024:.0f} MB"
