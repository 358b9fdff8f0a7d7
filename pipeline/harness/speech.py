"""Where the voice really stops in a recording: the reference point of a live latency figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile

SPEECH_LEVEL = 0.02  # -34 dBFS: above the recordings' noise floor, below any syllable


def speech_end_s(wav: Path) -> float:
    """The end of the last sample above SPEECH_LEVEL, in seconds from the start of the file."""
    audio, rate = soundfile.read(wav, dtype="float32")
    loud = np.flatnonzero(np.abs(audio) > SPEECH_LEVEL)
    return (loud[-1] + 1) / rate
