"""bench.agreement's live cuts: where the pipeline's stretches end, and where the rest is decoded from."""

import numpy as np

from bench.agreement import LIVE_COPY_S, RATE, live_cuts
from pipeline.silero import WINDOW_SAMPLES
from tests.fakes import ScriptedVad

WINDOW = WINDOW_SAMPLES[RATE]  # 32 ms


def scripted(*runs: tuple[float, int]) -> tuple[np.ndarray, ScriptedVad]:
    """Audio as long as the windows scripted: (probability, windows) runs."""
    probs = [p for p, n in runs for _ in range(n)]
    return np.zeros(len(probs) * WINDOW, dtype=np.float32), ScriptedVad(probs)


def test_a_stretch_ends_where_the_copy_leaves_and_the_rest_starts_at_the_pause():
    audio, vad = scripted((0.9, 100), (0.0, 10), (0.9, 50))  # 3.2 s of speech, a 320 ms pause, 1.6 s
    voice_end_s = 160 * WINDOW / RATE
    pause_start = 100 * WINDOW
    cut = pause_start + int(LIVE_COPY_S * RATE)
    assert live_cuts(audio, voice_end_s, vad, from_pause_start=True) == [(cut, pause_start)]
    audio, vad = scripted((0.9, 100), (0.0, 10), (0.9, 50))
    assert live_cuts(audio, voice_end_s, vad, from_pause_start=False) == [(cut, cut)]


def test_no_cut_before_three_seconds_of_speech_nor_at_a_pause_shorter_than_the_copy_wait():
    audio, vad = scripted((0.9, 60), (0.0, 10), (0.9, 100))  # the pause comes after 1.9 s only
    assert live_cuts(audio, 170 * WINDOW / RATE, vad, True) == []
    audio, vad = scripted((0.9, 100), (0.0, 3), (0.9, 100))  # 96 ms: the copy never left
    assert live_cuts(audio, 203 * WINDOW / RATE, vad, True) == []
