"""Turns a stream of (window, speech probability) into utterances; pure, no model, no clock.

Opens at the first window above `threshold` with `pre_roll_ms` of audio before it, closes
after `min_silence_ms` below `threshold - 0.15` (Silero's own hysteresis), force-splits at
`max_utterance_s`, and drops bursts shorter than `min_speech_ms`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from pipeline.config import VadConfig

HYSTERESIS = 0.15


@dataclass(frozen=True)
class Segment:
    """One closed utterance: where it lies in the stream, its audio, and why it closed."""
    start_sample: int   # in the capture stream
    end_sample: int
    pcm: np.ndarray
    reason: str         # "silence" | "max_silence" | "turn_complete" | "max_length" | "flush"
    silence_samples: int = 0  # the trailing silence it closed on (the endpoint's share of the wait)


class Segmenter:
    """Windows and their speech probabilities in, closed segments out."""
    def __init__(self, cfg: VadConfig, sample_rate_hz: int) -> None:
        self.cfg = cfg
        self.rate = sample_rate_hz
        self._preroll: deque[np.ndarray] = deque()
        self._preroll_samples = 0
        self._open: list[np.ndarray] | None = None
        self._start = 0
        self._position = 0          # samples seen so far
        self._speech_samples = 0
        self._silence_samples = 0
        self.dropped_short = 0
        self.close_after_ms = cfg.min_silence_ms  # the VAD moves it as the text is judged
        self.close_reason = "silence"             # what a close by silence is logged as

    @property
    def is_open(self) -> bool:
        return self._open is not None

    @property
    def in_trailing_silence(self) -> bool:
        return self._silence_samples > 0

    @property
    def trailing_silence_ms(self) -> float:
        return self._silence_samples * 1000 / self.rate

    @property
    def trailing_silence_samples(self) -> int:
        return self._silence_samples

    def open_audio(self) -> np.ndarray:
        """The open utterance so far (for interim transcripts)."""
        return np.concatenate(self._open) if self._open else np.zeros(0, dtype=np.float32)

    @property
    def position(self) -> int:
        """Samples pushed so far (the coordinates of open_start and of Segment's samples)."""
        return self._position

    @property
    def open_start(self) -> int:
        return self._start

    @property
    def open_samples(self) -> int:
        return self._position - self._start if self._open is not None else 0

    def push(self, window: np.ndarray, prob: float) -> list[Segment]:
        """Feed one window and its speech probability; returns closed segments."""
        self._position += window.size
        if self._open is None:
            if prob >= self.cfg.threshold:
                self._begin(window)
            else:
                self._remember(window)
            return []
        self._open.append(window)
        if prob >= self.cfg.threshold - HYSTERESIS:
            self._speech_samples += window.size + self._silence_samples
            self._silence_samples = 0
        else:
            self._silence_samples += window.size
        if self._silence_samples * 1000 >= self.close_after_ms * self.rate:
            return self._close(self.close_reason)
        if self._position - self._start >= self.cfg.max_utterance_s * self.rate:
            closed = self._close("max_length")
            self._begin(np.zeros(0, dtype=np.float32))  # speech goes on: the next one starts here
            return closed
        return []

    def close_now(self, reason: str) -> list[Segment]:
        """Close the open utterance here, with the silence heard so far (the turn is over)."""
        return self._close(reason) if self._open is not None else []

    def flush(self) -> list[Segment]:
        """Close whatever is open (end of stream, capture gap, shutdown)."""
        closed = self._close("flush") if self._open is not None else []
        self._preroll.clear()
        self._preroll_samples = 0
        return closed

    def _begin(self, window: np.ndarray) -> None:
        self._open = [*self._preroll, window]
        self._start = self._position - self._preroll_samples - window.size
        self._speech_samples = window.size
        self._silence_samples = 0
        self._preroll.clear()
        self._preroll_samples = 0

    def _remember(self, window: np.ndarray) -> None:
        self._preroll.append(window)
        self._preroll_samples += window.size
        limit = self.cfg.pre_roll_ms * self.rate // 1000
        while self._preroll and self._preroll_samples - self._preroll[0].size >= limit:
            self._preroll_samples -= self._preroll.popleft().size

    def _close(self, reason: str) -> list[Segment]:
        pcm = np.concatenate(self._open) if self._open else np.zeros(0, dtype=np.float32)
        silence, self._open = self._silence_samples, None
        self.close_after_ms, self.close_reason = self.cfg.min_silence_ms, "silence"
        if self._speech_samples * 1000 < self.cfg.min_speech_ms * self.rate:
            self.dropped_short += 1
            return []
        return [Segment(self._start, self._start + pcm.size, pcm, reason, silence)]
