"""Tests for voicelib.audio: every bad input is refused with a named file and a reason; formats round-trip."""
from __future__ import annotations

import os
import stat
import sys

import numpy as np
import pytest
import soundfile as sf

from voicelib.audio import decode, dsp
from voicelib.errors import AudioError


def refused(path, *words: str, **options) -> AudioError:
    """Load `path`, expect AudioError naming the file and containing each word; return it."""
    with pytest.raises(AudioError) as info:
        decode.load(path, **options)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    for word in words:
        assert word in message, message
    return info.value


def dominant_hz(wave: np.ndarray, sr: int) -> float:
    """Frequency of the strongest FFT bin."""
    return float(np.argmax(np.abs(np.fft.rfft(wave))) * sr / len(wave))


# -- bad input --------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    refused(tmp_path / "nope.wav", "no such file")


def test_directory(tmp_path):
    refused(tmp_path, "directory")


def test_zero_bytes(tmp_path):
    path = tmp_path / "empty.wav"
    path.touch()
    refused(path, "empty", "0 bytes")


def test_text_renamed_wav(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio\n" * 20)
    refused(path, "not a readable audio file", "convert")


def test_unsupported_extension(tmp_path, speech_file):
    path = speech_file("speech.wav").rename(tmp_path / "speech.xyz")
    refused(path, "unsupported extension", "'.xyz'")


@pytest.mark.parametrize("name", ["cut.wav", "cut.flac", "cut.mp3", "cut.ogg", "cut.opus"])
def test_truncated(tmp_path, speech_file, name):
    data = speech_file(name).read_bytes()
    path = tmp_path / f"half-{name}"
    path.write_bytes(data[: len(data) // 2])
    refused(path, "truncated")


def test_corrupt_flac_body(tmp_path, speech_file):
    path = speech_file("speech.flac")
    data = bytearray(path.read_bytes())
    data[3000:9000] = np.random.default_rng(0).integers(0, 256, 6000, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    refused(path, "corrupt")


def test_all_zero(tmp_path):
    path = tmp_path / "zeros.wav"
    sf.write(path, np.zeros(16000, np.float32), 16000)
    refused(path, "silent", "all zero", "allow_silent")
    assert decode.load(path, allow_silent=True).shape == (16000,)


def test_near_silent(tmp_path, make_noise):
    path = tmp_path / "hiss.wav"
    sf.write(path, make_noise(amplitude=2e-5), 16000, subtype="FLOAT")  # peak about -80 dBFS
    refused(path, "silent", "dBFS")


def test_too_short(tmp_path, make_tone):
    path = tmp_path / "blip.wav"
    sf.write(path, make_tone(duration=0.1), 16000)
    refused(path, "shorter than min_duration")
    assert len(decode.load(path, min_duration=0.05)) == 1600


def test_too_long_is_refused_from_the_header(tmp_path, make_tone):
    # the body is garbage after the header: a decode would fail with "corrupt", the header check does not decode
    path = tmp_path / "long.flac"
    sf.write(path, make_tone(duration=5.0), 16000)
    data = bytearray(path.read_bytes())
    data[2000:] = bytes(len(data) - 2000)
    path.write_bytes(bytes(data))
    refused(path, "longer than max_duration", "5.0 s", max_duration=3.0)


def test_nan_samples(tmp_path, make_tone):
    wave = make_tone()
    wave[100:200] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(path, wave, 16000, subtype="FLOAT")
    refused(path, "NaN")


def test_ffmpeg_format_without_ffmpeg(tmp_path, monkeypatch, speech_file):
    path = speech_file("speech.wav").rename(tmp_path / "clip.webm")
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    refused(path, "ffmpeg", "apt-get install ffmpeg", "convert to wav/flac")


def test_ffmpeg_format_through_subprocess(tmp_path, monkeypatch, speech_file):
    # a stand-in ffmpeg (same command line: -i IN ... OUT) proves the subprocess path end to end
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "ffmpeg"
    fake.write_text(f"#!{sys.executable}\nimport sys, soundfile as sf\nargs = sys.argv\n"
                    "data, sr = sf.read(args[args.index('-i') + 1], dtype='float32')\n"
                    "sf.write(args[-1], data, sr, format='WAV', subtype='FLOAT')\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    source = speech_file("speech.wav", sr=22050)
    path = source.rename(tmp_path / "clip.m4a")
    wave = decode.load(path)
    assert wave.dtype == np.float32 and abs(len(wave) / 16000 - sf.info(str(tmp_path / "clip.m4a")).duration) < 0.01


def test_check_wave_arrays():
    with pytest.raises(AudioError, match="mono"):
        dsp.check_wave(np.zeros((2, 100), np.float32), 16000, name="x")
    with pytest.raises(AudioError, match="clip-7.*shorter"):
        dsp.check_wave(np.ones(100, np.float32), 16000, name="clip-7")
    with pytest.raises(AudioError, match="infinite"):
        dsp.check_wave(np.full(16000, np.inf, np.float32), 16000)


# -- formats and rates ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["s.wav", "s.flac", "s.mp3", "s.ogg", "s.opus"])
def test_formats_round_trip(speech_file, speech, name):
    wave, sr = speech
    loaded = decode.load(speech_file(name))
    assert loaded.dtype == np.float32 and loaded.ndim == 1
    assert abs(len(loaded) - len(wave)) < 0.06 * sr
    assert 0.3 < np.abs(loaded).max() / np.abs(wave).max() < 1.5


@pytest.mark.parametrize("rate", [44100, 8000])
def test_resampling_on_load(tmp_path, make_tone, rate):
    path = tmp_path / f"tone{rate}.wav"
    sf.write(path, make_tone(440.0, duration=1.0, sr=rate), rate)
    wave = decode.load(path, sr=16000)
    assert abs(len(wave) - 16000) <= 1
    assert abs(dominant_hz(wave, 16000) - 440.0) < 2.0
    assert len(decode.load(path, sr=None)) == rate


def test_info(speech_file):
    meta = decode.info(speech_file("s.flac", sr=22050, channels=2))
    assert (meta.sample_rate, meta.channels, meta.format) == (22050, 2, "FLAC")
    assert meta.duration == pytest.approx(meta.frames / 22050)


def test_stereo_mixdown_is_the_mean(tmp_path, make_tone):
    left, right = make_tone(440.0), make_tone(660.0, amplitude=0.2)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    np.testing.assert_allclose(decode.load(path), (left + right) / 2, atol=1e-6)


def test_stereo_ignores_a_channel_40db_quieter(tmp_path, make_tone, make_noise):
    voice, hiss = make_tone(440.0), make_noise(amplitude=1e-4)
    path = tmp_path / "one-sided.wav"
    sf.write(path, np.stack([hiss, voice], axis=1), 16000, subtype="FLOAT")
    np.testing.assert_allclose(decode.load(path), voice, atol=1e-6)  # not halved


# -- processing -------------------------------------------------------------------------------

def test_trim_silence_keeps_the_speech(speech):
    wave, sr = speech
    padded = np.concatenate([np.zeros(sr, np.float32), wave, np.zeros(sr, np.float32)])
    trimmed = dsp.trim_silence(padded, sr, top_db=40, pad=0.05)
    loud = np.abs(padded) > 0.01 * np.abs(padded).max()
    assert np.count_nonzero(np.abs(trimmed) > 0.01 * np.abs(padded).max()) == np.count_nonzero(loud)
    assert len(trimmed) < len(wave) + 0.2 * sr  # the added 2 s of silence are gone, pads stay small
    assert dsp.trim_silence(np.zeros(sr, np.float32), sr).shape == (sr,)  # nothing to anchor on: unchanged


def test_trim_on_load(tmp_path, speech):
    wave, sr = speech
    path = tmp_path / "padded.wav"
    sf.write(path, np.concatenate([np.zeros(2 * sr, np.float32), wave]), sr, subtype="FLOAT")
    assert len(decode.load(path, trim=True)) < len(wave) + 0.2 * sr


def test_normalize_loudness(make_tone):
    quiet = make_tone(amplitude=0.01)
    out = dsp.normalize_loudness(quiet, target_dbfs=-23.0)
    assert 20 * np.log10(np.sqrt(np.mean(out.astype(np.float64) ** 2))) == pytest.approx(-23.0, abs=0.01)
    spiky = np.zeros(16000, np.float32)
    spiky[::1000] = 0.5
    assert np.abs(dsp.normalize_loudness(spiky, target_dbfs=-3.0)).max() <= 0.99 + 1e-6


def test_load_normalize(tmp_path, make_tone):
    path = tmp_path / "quiet.wav"
    sf.write(path, make_tone(amplitude=0.01), 16000)
    wave = decode.load(path, normalize=True)
    assert 20 * np.log10(np.sqrt(np.mean(wave.astype(np.float64) ** 2))) == pytest.approx(-23.0, abs=0.1)


# -- saving and in-memory codecs --------------------------------------------------------------

@pytest.mark.parametrize("name", ["out.wav", "out.flac", "out.mp3", "out.ogg"])
def test_save_round_trip(tmp_path, speech, name):
    wave, sr = speech
    path = decode.save(tmp_path / name, wave, sr)
    assert abs(len(decode.load(path)) - len(wave)) < 0.06 * sr
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left behind


def test_save_refuses_to_overwrite_when_asked(tmp_path, make_tone):
    path = decode.save(tmp_path / "a.wav", make_tone(), 16000)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="a.wav"):
        decode.save(path, make_tone(880.0), 16000, overwrite=False)
    assert path.read_bytes() == before


def test_save_rejects_bad_input(tmp_path, make_tone):
    with pytest.raises(ValueError, match="format"):
        decode.save(tmp_path / "a.xyz", make_tone(), 16000)
    with pytest.raises(ValueError, match="mono"):
        decode.save(tmp_path / "a.wav", np.zeros((100, 2), np.float32), 16000)


def test_codec_bytes_round_trip(speech):
    wave, sr = speech
    small = decode.encode_bytes(wave, sr, format="mp3", compression_level=1.0)
    large = decode.encode_bytes(wave, sr, format="mp3", compression_level=0.0)
    assert len(small) < len(large)
    for rate, kbps in [(16000, 32), (44100, 128)]:
        data = decode.encode_bytes(np.resize(wave, 3 * rate), rate, format="mp3", bitrate_kbps=kbps)
        assert len(data) * 8 / 3 / 1000 == pytest.approx(kbps, rel=0.1)
    with pytest.raises(ValueError, match="8..160"):
        decode.encode_bytes(wave, sr, format="mp3", bitrate_kbps=320)
    decoded = decode.decode_bytes(small, sr=sr, name="mem.mp3")
    assert abs(len(decoded) - len(wave)) < 0.06 * sr
    with pytest.raises(AudioError, match="mem.bin"):
        decode.decode_bytes(b"not audio at all" * 10, name="mem.bin")
