"""Smart Turn v3.2: the pinned file, the features of its contract, and a probability out."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram

from pipeline.audio import load_audio
from pipeline.config import PipelineConfig
from pipeline.transcription import turn_model
from pipeline.transcription.turn_model import SideTurnModel, SmartTurn, TurnModelMissing, verified
from tests.conftest import DATA_DIR


@pytest.fixture(scope="module")
def smart_turn() -> SmartTurn:
    return SmartTurn(verified(PipelineConfig().models_cache_dir()))  # scripts/setup provisions it


def test_a_missing_or_altered_file_is_never_loaded(tmp_path):
    with pytest.raises(TurnModelMissing, match="turn_model fetch"):
        verified(tmp_path)
    path = turn_model.model_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not the model")
    with pytest.raises(TurnModelMissing, match="sha256"):
        verified(tmp_path)


def test_features_are_the_last_8_s_zero_padded_at_the_front(smart_turn):
    short = np.random.default_rng(1).normal(0, 0.1, 16000).astype(np.float32)
    features = smart_turn.features(short)
    assert features.shape == (80, 800) and features.dtype == np.float32
    # 7 s of padding (the same frame over and over), then sound
    assert np.ptp(features[:, 2:600], axis=1).max() < 1e-5 < np.ptp(features[:, -90:], axis=1).max()
    long = np.concatenate([np.ones(5 * 16000, dtype=np.float32), short, np.zeros(8 * 16000 - 16000, np.float32)])
    assert np.array_equal(smart_turn.features(long), smart_turn.features(long[-8 * 16000:]))


def test_real_speech_gets_a_probability(smart_turn):
    audio = load_audio(DATA_DIR / "audio" / "fr-conf-full.wav", 600)
    p = smart_turn.probability(audio)
    assert 0.0 <= p <= 1.0 and smart_turn.probability(audio) == p


class GatedModel:
    """A turn model that answers only once the test lets it: shows who waits for whom."""

    def __init__(self) -> None:
        self.heard, self.gate = threading.Event(), threading.Event()

    def probability(self, audio: np.ndarray) -> float:
        self.heard.set()
        assert self.gate.wait(60), "the test never opened the gate"
        return 0.75


def test_the_side_model_hears_the_turn_while_the_caller_goes_on_and_is_timed():
    seconds = Histogram("test_side_turn_seconds", "test", registry=CollectorRegistry())
    model = GatedModel()
    side = SideTurnModel(model, seconds)
    try:
        answer = side.ask(np.zeros(16000, dtype=np.float32))
        assert model.heard.wait(60) and not answer.done()  # running beside the caller, which is free
        model.gate.set()
        assert answer.result(timeout=60) == 0.75
        assert seconds._sum.get() > 0  # stt_turn_model_seconds is observed on the side thread
    finally:
        model.gate.set()
        side.close()
