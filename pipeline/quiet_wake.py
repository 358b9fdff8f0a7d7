"""When capture may let silent audio pile up: a silent microphone should cost almost nothing.

A reader woken for every 32 ms block costs ~0.5 ms of CPU per wake in capture and again in the
VAD (cold caches: the same code in a tight loop takes a seventh of that). Below the VAD's silence
floor nothing can happen: the VAD answers such windows as silence without calling Silero, and
once that silence has lasted longer than `vad.max_silence_ms` no utterance can still be open.
From then on capture is woken every `audio.quiet_wake_ms` and sends what piled up in one burst;
the first block at or above the floor wakes it at once, so speech is never held back.
"""

from __future__ import annotations

import numpy as np


class QuietWake:
    """Per block, in PortAudio's thread: must the reader take this block now?"""

    def __init__(self, floor_dbfs: float | None, quiet_after_ms: float, rate_hz: int) -> None:
        self._floor_energy = None if floor_dbfs is None else 10 ** (floor_dbfs / 10)  # mean square
        self._after_samples = int(quiet_after_ms * rate_hz / 1000)
        self._quiet_samples = 0

    @property
    def quiet(self) -> bool:
        """True once the floor-quiet stretch is long enough that blocks may wait."""
        return self._floor_energy is not None and self._quiet_samples >= self._after_samples

    def wake_now(self, block: np.ndarray) -> bool:
        if self._floor_energy is None:
            return True
        mean_square = float(np.dot(block, block)) / max(1, block.size)
        # NaN compares False: a broken block counts as sound, and the VAD sees (and counts) it at once.
        below = mean_square < self._floor_energy
        self._quiet_samples = self._quiet_samples + block.size if below else 0
        return not self.quiet
