"""The hesitation set: a Debian prompt with a 500-700 ms pause at a word boundary mid-sentence.

Issue 12 asks for "a pause inserted at a word boundary mid-sentence: one spoken turn each". The
quietest 10 ms of the voice alone is often inside a word (the closure before a « t »:
« main | tenant »), which no decoder reads back: plain faster-whisper (bench/original.py) gave
58.7 % WER on 24 prompts cut that way against 16.6 % on the same prompts whole, and 20.4 % with
the pause at a word boundary. So the boundaries come from the original configuration's word
timestamps; the pause goes at the quietest 10 ms around one of them (a splice without a click),
between 30 % and 70 % of the voice, after a word that does not end a sentence (a pause after a
full stop is a second sentence, not a hesitation).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import soundfile

from bench.corpus import Prompt
from bench.original import transcribe_original
from pipeline.audio import load_audio
from pipeline.endpointing import SENTENCE_END
from pipeline.harness.speech import SPEECH_LEVEL

RATE = 16000
FRAME = RATE // 100  # 10 ms
PAUSE_S = (0.5, 0.7)
SLACK_S = 0.04  # Whisper's word timestamps are this far off, or more


def word_gaps(model, audio: np.ndarray) -> list[tuple[int, int]]:
    """Sample ranges around each boundary between two words of one sentence."""
    words = [w for segment in transcribe_original(model, audio, word_timestamps=True) for w in segment.words]
    return [(round((a.end - SLACK_S) * RATE), round((b.start + SLACK_S) * RATE))
            for a, b in zip(words, words[1:]) if not SENTENCE_END.search(a.word.strip())]


def hesitation_cut(audio: np.ndarray, gaps: list[tuple[int, int]]) -> int:
    """The sample where the pause goes: the quietest 10 ms of the gaps in the middle of the voice
    (of the whole middle when no gap lies there: a prompt of one word, or one Whisper misread)."""
    loud = np.flatnonzero(np.abs(audio) > SPEECH_LEVEL)
    lo, hi = loud[0] + 0.3 * (loud[-1] - loud[0]), loud[0] + 0.7 * (loud[-1] - loud[0])
    middle = [(start, end) for start, end in gaps if lo <= (start + end) / 2 <= hi] or [(int(lo), int(hi))]
    starts = [i for start, end in middle for i in range(max(0, start), max(start + 1, end - FRAME), FRAME // 2)]
    quietest = min(starts, key=lambda i: float(np.mean(audio[i:i + FRAME] ** 2)))
    return quietest + FRAME // 2


def with_hesitation(prompt: Prompt, model, folder: Path, rng: random.Random) -> Path:
    """The prompt, written to `folder` with a 500-700 ms pause at its hesitation cut."""
    audio = load_audio(prompt.path, 600)
    cut = hesitation_cut(audio, word_gaps(model, audio))
    pause = np.zeros(int(rng.uniform(*PAUSE_S) * RATE), dtype=np.float32)
    path = folder / f"{prompt.name.replace('/', '_')}-hesitation.wav"
    soundfile.write(path, np.concatenate([audio[:cut], pause, audio[cut:]]), RATE, subtype="PCM_16")
    return path
