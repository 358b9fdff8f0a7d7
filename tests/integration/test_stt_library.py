"""RobustSTTManager as a library, with the real `base` model on real French speech and non-speech."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from pipeline.stt import RobustSTTManager
from pipeline.testmode import keyword_hits
from tests.integration.harness import ROOT

pytestmark = pytest.mark.slow
DATA = ROOT / "tests" / "data"


@pytest.fixture(scope="module")
def manager():
    m = RobustSTTManager({})
    asyncio.run(m.initialize())
    yield m
    asyncio.run(m.cleanup())


def test_french_wav_bytes(manager):
    result = asyncio.run(manager.transcribe_audio((DATA / "audio" / "fr-conf-full.wav").read_bytes(), language="fr"))
    assert keyword_hits(["cette", "conférence", "est", "pleine"], result["text"]) >= 3, result["text"]
    assert result["model_used"] == "base" and result["device"] == "cpu" and result["segments"]
    assert result["metrics"]["audio_duration"] == pytest.approx(1.89, abs=0.01)
    assert manager.get_metrics()["transcriptions"] >= 1


@pytest.mark.parametrize("name", ["silence", "white_noise", "beeperr"])
def test_nothing_is_transcribed_from_non_speech(manager, name):
    rng = np.random.default_rng(7)
    audio = {"silence": np.zeros(3 * 16000, dtype=np.float32),
             "white_noise": (0.1 * rng.standard_normal(3 * 16000)).astype(np.float32),
             "beeperr": (DATA / "nonspeech" / "beeperr.wav").read_bytes()}[name]
    result = asyncio.run(manager.transcribe_audio(audio))
    assert result["text"] == "" and result["is_speech"] is False and result["non_speech_reason"]
