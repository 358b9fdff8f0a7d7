"""The VAD's utterance logic driven by scripted speech probabilities (pipecat's MockVADAnalyzer idea)."""

import numpy as np

from pipeline.config import VadConfig
from pipeline.segmenter import Segmenter

RATE = 16000
WIN = 512  # 32 ms


class ScriptedVad:
    """Feeds windows whose sample values are their index, with scripted probabilities."""

    def __init__(self, cfg: VadConfig) -> None:
        self.seg = Segmenter(cfg, RATE)
        self.index = 0

    def run(self, probs):
        out = []
        for p in probs:
            out += self.seg.push(np.full(WIN, self.index, dtype=np.float32), p)
            self.index += 1
        return out


def windows(ms: int) -> int:
    return ms * RATE // 1000 // WIN


def test_utterance_closes_after_min_silence_and_keeps_pre_roll():
    cfg = VadConfig(min_silence_ms=320, pre_roll_ms=96, min_speech_ms=100)
    vad = ScriptedVad(cfg)
    out = vad.run([0.0] * 10 + [0.9] * 20 + [0.0] * 9)
    assert out == []  # 288 ms of silence: still open
    out = vad.run([0.0])
    assert len(out) == 1
    seg = out[0]
    first_window = int(seg.pcm[0])
    assert first_window == 7  # 3 windows (96 ms) of pre-roll before speech at window 10
    assert seg.start_sample == 7 * WIN and seg.end_sample == seg.start_sample + seg.pcm.size
    assert seg.reason == "silence"
    assert seg.silence_samples == 10 * WIN  # the 320 ms it closed on, logged as the endpoint's share


def test_hysteresis_keeps_dips_inside_speech():
    vad = ScriptedVad(VadConfig(min_silence_ms=100, pre_roll_ms=0, min_speech_ms=0))
    out = vad.run([0.9] * 5 + [0.4] * 10 + [0.9] * 5)  # 0.4 > 0.5 - 0.15: still speech
    assert out == [] and vad.seg.is_open


def test_short_bursts_are_dropped():
    vad = ScriptedVad(VadConfig(min_silence_ms=100, min_speech_ms=200))
    out = vad.run([0.9] * 2 + [0.0] * 10)
    assert out == [] and vad.seg.dropped_short == 1


def test_long_speech_is_force_split_and_continues():
    vad = ScriptedVad(VadConfig(max_utterance_s=2.0, pre_roll_ms=0, min_speech_ms=0))
    out = vad.run([0.9] * windows(5000))
    assert [s.reason for s in out] == ["max_length", "max_length"]
    assert all(abs(s.pcm.size / RATE - 2.0) < 0.05 for s in out)
    assert out[1].start_sample == out[0].end_sample  # nothing lost between the pieces
    assert [s.reason for s in vad.seg.flush()] == ["flush"]


def test_flush_closes_the_open_utterance():
    vad = ScriptedVad(VadConfig(min_speech_ms=0))
    vad.run([0.9] * 10)
    out = vad.seg.flush()
    assert len(out) == 1 and out[0].reason == "flush" and not vad.seg.is_open
