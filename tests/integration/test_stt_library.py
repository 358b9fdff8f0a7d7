"""RobustSTTManager as a library, with the real `base` model on real French speech and non-speech."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from pipeline.harness.pipeline_process import ROOT
from pipeline.stt import RobustSTTManager
from pipeline.testmode import keyword_hits

pytestmark = pytest.mark.slow
DATA = ROOT / "tests" / "data"
RATE = 16000


def _started(config: dict) -> RobustSTTManager:
    m = RobustSTTManager(config)
    asyncio.run(m.initialize())
    return m


@pytest.fixture(scope="module")
def manager():
    """As a library caller gets it: `{}`, so the Silero speech gate is on."""
    m = _started({})
    yield m
    asyncio.run(m.cleanup())


@pytest.fixture(scope="module")
def ungated():
    """Whisper's own no-speech and log-probability thresholds alone."""
    m = _started({"use_vad": False})
    yield m
    asyncio.run(m.cleanup())


def test_french_wav_bytes(manager):
    result = asyncio.run(manager.transcribe_audio((DATA / "audio" / "fr-conf-full.wav").read_bytes(), language="fr"))
    assert keyword_hits(["cette", "conférence", "est", "pleine"], result["text"]) >= 3, result["text"]
    assert result["model_used"] == "base" and result["device"] == "cpu" and result["segments"]
    assert result["metrics"]["audio_duration"] == pytest.approx(1.89, abs=0.01)
    assert manager.get_metrics()["transcriptions"] >= 1 and manager.get_metrics()["vad_enabled"] is True


def _at_dbfs(signal: np.ndarray, dbfs: float) -> np.ndarray:
    """Scaled so that its RMS is `dbfs` below full scale."""
    return (signal / np.sqrt(np.mean(signal ** 2)) * 10 ** (dbfs / 20)).astype(np.float32)


def _pink(n: int, rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n)
    freqs[0] = freqs[1]
    return np.fft.irfft(spectrum / np.sqrt(freqs), n)


def _tones(pairs_hz: list[tuple[float, float]], on_s: float, off_s: float, repeats: int) -> np.ndarray:
    """Telephone signalling: DTMF digits (two tones) or a busy/dial tone, on and off."""
    t = np.arange(int(on_s * RATE)) / RATE
    bursts = [np.concatenate([0.15 * (np.sin(2 * np.pi * lo * t) + np.sin(2 * np.pi * hi * t)),
                              np.zeros(int(off_s * RATE))]) for lo, hi in pairs_hz]
    return np.concatenate(bursts * repeats).astype(np.float32)


def non_speech(name: str) -> np.ndarray | bytes:
    rng = np.random.default_rng(7)
    t = np.arange(5 * RATE) / RATE
    return {
        "silence": lambda: np.zeros(5 * RATE, dtype=np.float32),
        "white_noise_-30dBFS": lambda: _at_dbfs(rng.standard_normal(5 * RATE), -30),
        "white_noise_-10dBFS": lambda: _at_dbfs(rng.standard_normal(5 * RATE), -10),
        "hum_50Hz": lambda: _at_dbfs(np.sin(2 * np.pi * 50 * t) + 0.3 * np.sin(2 * np.pi * 150 * t), -20),
        "pink_noise": lambda: _at_dbfs(_pink(5 * RATE, rng), -20),
        "dtmf_digits": lambda: _tones([(697, 1209), (770, 1336), (852, 1477), (941, 1336)], 0.15, 0.1, 4),
        "busy_tone": lambda: _tones([(440, 440)], 0.5, 0.5, 5),
        "dial_tone": lambda: _tones([(440, 440)], 5.0, 0.0, 1),
        "beeperr": lambda: (DATA / "nonspeech" / "beeperr.wav").read_bytes(),
    }[name]()


NON_SPEECH = ["silence", "white_noise_-30dBFS", "white_noise_-10dBFS", "hum_50Hz", "pink_noise",
              "dtmf_digits", "busy_tone", "dial_tone", "beeperr"]


@pytest.mark.parametrize("name", NON_SPEECH)
def test_a_library_caller_gets_no_text_for_non_speech(manager, name):
    result = asyncio.run(manager.transcribe_audio(non_speech(name)))
    assert result["text"] == "" and result["is_speech"] is False and result["non_speech_reason"], result


def test_whisper_thresholds_alone_still_refuse_silence(ungated):
    """Only silence: on the horn (`beeperr`) Whisper's no-speech probability sits near its threshold,
    and where it falls below, the temperature fallback samples a sentence now and then (seen once in
    a full-suite run: « Je vous invite à vous faire une vidéo sur la chaîne. » ×3). That is why the
    Silero gate is on by default; the gated caller's test above covers the horn."""
    result = asyncio.run(ungated.transcribe_audio(non_speech("silence")))
    assert result["text"] == "" and result["is_speech"] is False and result["non_speech_reason"] not in (None, "vad")


def test_white_noise_at_0_1_through_whisper_thresholds_alone(ungated):
    rng = np.random.default_rng(7)
    result = asyncio.run(ungated.transcribe_audio((0.1 * rng.standard_normal(3 * RATE)).astype(np.float32)))
    assert result["text"] == "" and result["is_speech"] is False and result["non_speech_reason"]
