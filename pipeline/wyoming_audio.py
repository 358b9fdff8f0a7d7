"""One Wyoming client's turn as the pipeline hears it: any PCM the protocol allows in, 16 kHz mono
float32 out, and when to decode it ahead (the VAD's rule: speech, then `speculate_after_ms` of
silence), so that at `audio-stop` the transcript is usually decoded already.

Home Assistant ends a turn with its own VAD, after a second or so of silence: a copy sent at the
first pause is decoded during that silence; if speech comes back, the next pause sends another.
A client that sends a recording faster than real time gets no copies: its audio-stop follows at
once, and a copy of a mid-sentence pause would only hold the worker while the final waits.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import soxr

from pipeline.audio import MAX_CHANNELS, TARGET_RATE_HZ
from pipeline.silero import WINDOW_SAMPLES

MIN_RATE_HZ, MAX_RATE_HZ = 8000, 192000
WINDOW = WINDOW_SAMPLES[TARGET_RATE_HZ]


class TurnAudioError(ValueError):
    """A turn the pipeline cannot take (its audio format, length or language); `reason` is a metric label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _to_float(pcm: bytes, width: int) -> np.ndarray:
    """Little-endian signed PCM (unsigned for 8-bit, as WAV) -> float32 in [-1, 1)."""
    if width == 1:
        return (np.frombuffer(pcm, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    if width == 2:
        return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    if width == 3:
        raw = np.frombuffer(pcm, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        value = raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)
        return (np.where(value >= 1 << 23, value - (1 << 24), value)).astype(np.float32) / float(1 << 23)
    return np.frombuffer(pcm, dtype="<i4").astype(np.float32) / float(1 << 31)


class TurnAudio:
    """The audio of one turn, converted as it streams in, and whether to speculate now."""

    def __init__(self, rate: int, width: int, channels: int, max_s: float,
                 speech_prob: Callable[[np.ndarray, int], float], threshold: float, speculate_after_ms: int) -> None:
        if not MIN_RATE_HZ <= rate <= MAX_RATE_HZ:
            raise TurnAudioError("audio_format", f"rate {rate} Hz is outside {MIN_RATE_HZ}-{MAX_RATE_HZ} Hz")
        if width not in (1, 2, 3, 4):
            raise TurnAudioError("audio_format", f"width {width} bytes is not 1, 2, 3 or 4")
        if not 1 <= channels <= MAX_CHANNELS:
            raise TurnAudioError("audio_format", f"{channels} channels is outside 1-{MAX_CHANNELS}")
        self.rate, self.width, self.channels = rate, width, channels
        self._max_samples = int(max_s * TARGET_RATE_HZ)
        self._resampler = soxr.ResampleStream(rate, TARGET_RATE_HZ, 1, dtype="float32") if rate != TARGET_RATE_HZ else None
        self._parts: list[np.ndarray] = []
        self.samples = 0
        self._unjudged: list[np.ndarray] = []  # audio Silero has not heard yet (less than a window once judged)
        self._speech_prob, self._threshold = speech_prob, threshold
        self._speculate_after = speculate_after_ms * TARGET_RATE_HZ // 1000
        self._speech_seen = False
        self._silence = 0  # samples of non-speech since the last speech window
        self.speculated = 0  # length of the copy sent at this pause; 0 = none, or speech came back since

    def add(self, pcm: bytes, judge: bool = True) -> bool:
        """Append one chunk; True when a speculative copy of the turn so far should go now.
        `judge=False`: no Silero on it yet (a client sending faster than real time, see
        `WyomingClient`); the next judged chunk catches up on everything not judged."""
        frame = self.width * self.channels
        if len(pcm) % frame:
            raise TurnAudioError("audio_format", f"a chunk of {len(pcm)} bytes is not whole {frame}-byte frames")
        mono = _to_float(pcm, self.width).reshape(-1, self.channels).mean(axis=1, dtype=np.float32)
        if self._resampler is not None:
            mono = self._resampler.resample_chunk(mono)
        self._append(mono)
        return self._judge() if judge else False

    def finish(self) -> np.ndarray:
        """`audio-stop`: the whole turn at 16 kHz (the resampler's tail included)."""
        if self._resampler is not None:
            self._append(self._resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
            self._resampler = None
        return np.concatenate(self._parts) if self._parts else np.zeros(0, dtype=np.float32)

    def so_far(self) -> np.ndarray:
        """The turn up to now, for a speculative copy; remembered as what the final may reuse."""
        audio = np.concatenate(self._parts) if self._parts else np.zeros(0, dtype=np.float32)
        self._parts = [audio]
        self.speculated = audio.size
        return audio

    def _append(self, mono: np.ndarray) -> None:
        if self.samples + mono.size > self._max_samples:
            raise TurnAudioError("too_long", f"the turn is longer than {self._max_samples / TARGET_RATE_HZ:g} s")
        if mono.size:
            self._parts.append(mono)
            self.samples += mono.size
            self._unjudged.append(mono)

    def _judge(self) -> bool:
        """Silero over the new whole windows; due once speech was heard and the pause is long enough."""
        pending = np.concatenate(self._unjudged) if self._unjudged else np.zeros(0, dtype=np.float32)
        whole = pending.size // WINDOW * WINDOW
        windows, self._unjudged = pending[:whole], [pending[whole:]]
        for start in range(0, whole, WINDOW):
            window = windows[start:start + WINDOW]
            if self._speech_prob(window, TARGET_RATE_HZ) >= self._threshold:
                self._speech_seen, self._silence, self.speculated = True, 0, 0
            else:
                self._silence += WINDOW
        due = self._speech_seen and not self.speculated and self._silence >= self._speculate_after
        return due and self._speculate_after > 0  # 0: vad.speculate_after_ms turned speculation off
