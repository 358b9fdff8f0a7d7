import io

import numpy as np
import pytest
import soundfile

from pipeline.audio import AudioTooLongError, EmptyAudioError, NonFiniteAudioError, UndecodableAudioError, load_audio
from pipeline.testmode import TEST_RECORDING


def wav_bytes(samples: np.ndarray, rate: int, fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    soundfile.write(buf, samples, rate, format=fmt)
    return buf.getvalue()


def tone(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * 440 * t).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def test_real_french_recording_becomes_16k_mono_float32_without_normalising():
    audio = load_audio(TEST_RECORDING, max_s=60)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.size / 16000 - 13.88) < 0.01
    assert 0.1 < np.abs(audio).max() < 0.99  # quiet stays quiet: no peak normalisation


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "OGG"])
def test_44k_stereo_in_any_container(fmt):
    audio = load_audio(wav_bytes(tone(1.0, 44100, channels=2), 44100, fmt), max_s=60)
    assert abs(audio.size - 16000) < 50
    assert 0.25 < np.abs(audio).max() < 0.35


def test_mp3_decodes():
    audio = load_audio(wav_bytes(tone(1.0, 44100), 44100, "MP3"), max_s=60)
    assert abs(audio.size - 16000) < 1200  # mp3 adds encoder padding


def test_int16_array_is_scaled_and_resampled():
    pcm = (tone(0.5, 8000) * 32767).astype(np.int16)
    audio = load_audio(pcm, max_s=60, sample_rate_hz=8000)
    assert audio.size == 8000 and abs(np.abs(audio).max() - 0.3) < 0.01


@pytest.mark.parametrize("source, error", [
    (b"", EmptyAudioError),
    (b"RIFF\x00\x00\x00\x00WAVEfmt garbage", UndecodableAudioError),
    (b"\x00" * 1000, UndecodableAudioError),
    (np.array([0.1, np.nan, 0.2], dtype=np.float32), NonFiniteAudioError),
    (np.array([0.1, np.inf], dtype=np.float32), NonFiniteAudioError),
    (np.zeros(0, dtype=np.float32), EmptyAudioError),
    (np.zeros((10, 2, 2), dtype=np.float32), ValueError),
])
def test_bad_audio_raises_a_typed_value_error(source, error):
    with pytest.raises(error) as raised:
        load_audio(source, max_s=60)
    assert isinstance(raised.value, ValueError)


def test_over_long_audio_is_refused_from_its_header():
    with pytest.raises(AudioTooLongError, match="more than 1 s"):
        load_audio(wav_bytes(tone(2.0, 16000), 16000), max_s=1)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(UndecodableAudioError, match="no such file"):
        load_audio(tmp_path / "nope.wav", max_s=60)
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(EmptyAudioError):
        load_audio(tmp_path / "empty.wav", max_s=60)
