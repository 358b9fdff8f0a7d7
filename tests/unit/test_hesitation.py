"""bench.hesitation puts the pause between two words of one sentence, never inside a word."""

from types import SimpleNamespace

import numpy as np

from bench.hesitation import RATE, hesitation_cut, word_gaps


def voice(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def test_the_cut_is_the_quietest_point_of_a_word_gap_not_a_quieter_dip_inside_a_word():
    audio = voice(4.0)
    audio[int(1.6 * RATE):int(1.65 * RATE)] = 0.0  # a stop's closure inside a word: silent
    audio[int(2.4 * RATE):int(2.45 * RATE)] *= 0.1  # the boundary between two words: only quieter
    cut = hesitation_cut(audio, [(int(0.5 * RATE), int(0.6 * RATE)),  # before 30 % of the voice
                                 (int(2.38 * RATE), int(2.48 * RATE))])
    assert int(2.4 * RATE) <= cut <= int(2.45 * RATE)


def test_without_a_gap_in_the_middle_the_cut_is_the_quietest_point_there():
    audio = voice(4.0)
    audio[int(1.6 * RATE):int(1.65 * RATE)] = 0.0
    assert int(1.6 * RATE) <= hesitation_cut(audio, []) <= int(1.65 * RATE)


class Words:
    """The one call word_gaps makes of a faster-whisper model: transcribe(...) -> (segments, info)."""

    def __init__(self, *timed: tuple[str, float, float]):
        self.words = [SimpleNamespace(word=w, start=a, end=b) for w, a, b in timed]

    def transcribe(self, audio, **options):
        assert options["word_timestamps"]
        return iter([SimpleNamespace(words=self.words)]), None


def test_no_gap_after_a_word_that_ends_a_sentence():
    model = Words((" Désolé,", 0.1, 0.6), (" occupés.", 0.7, 1.3), (" Veuillez", 1.5, 2.0), (" patienter", 2.1, 2.8))
    gaps = word_gaps(model, voice(3.0))
    assert gaps == [(round(0.56 * RATE), round(0.74 * RATE)), (round(1.96 * RATE), round(2.14 * RATE))]
