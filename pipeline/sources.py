"""Audio sources for the capture stage: files (tests, replays, --test-mode) and a live device.

Both yield 16 kHz mono float32 blocks of `frame_samples`; the capture stage numbers them.
"""

from __future__ import annotations

import queue
import time
from pathlib import Path
from typing import Callable

import numpy as np

from pipeline.audio import AudioInputError, load_audio
from pipeline.logs import get_logger

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".aiff", ".aif"}


class SourceEvent:
    """What a source hands the capture stage besides audio blocks."""

    def __init__(self, kind: str, detail: str = "", reason: str = "") -> None:
        self.kind = kind            # "next_file" | "bad_file" | "end"
        self.detail = detail
        self.reason = reason


def list_audio_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    return [path]


class FileSource:
    """Plays files one after another, at real-time pace or as fast as they are taken."""

    def __init__(self, path: Path, frame_samples: int, rate_hz: int, realtime: bool, max_s: float,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.files = list_audio_files(path)
        self.frame_samples = frame_samples
        self.rate = rate_hz
        self.realtime = realtime
        self.max_s = max_s
        self._clock, self._sleep = clock, sleep
        self._index = -1
        self._audio = np.zeros(0, dtype=np.float32)
        self._offset = 0
        self._t0 = 0.0
        self._played = 0  # samples handed out since the start, for pacing
        self.finished = False
        self.log = get_logger()

    def read(self, max_wait_s: float) -> list[np.ndarray | SourceEvent]:
        """Blocks and events due now (or within max_wait_s); [] when nothing is due yet."""
        if self._offset >= self._audio.size:
            return self._next_file()
        if self.realtime:
            due = self._t0 + self._played / self.rate
            wait = due - self._clock()
            if wait > 0:
                self._sleep(min(wait, max_wait_s))
                if self._clock() < due:
                    return []
        count = 1 if self.realtime else max(1, int(max_wait_s * 50))  # fast: a batch per call
        blocks = []
        while count and self._offset < self._audio.size:
            block = self._audio[self._offset:self._offset + self.frame_samples]
            if block.size < self.frame_samples:
                block = np.pad(block, (0, self.frame_samples - block.size))
            blocks.append(block)
            self._offset += self.frame_samples
            self._played += self.frame_samples
            count -= 1
        return blocks

    def _next_file(self) -> list[np.ndarray | SourceEvent]:
        if self.finished:
            return []
        self._index += 1
        if self._index >= len(self.files):
            self.finished = True
            return [SourceEvent("end", f"{len(self.files)} file(s)")]
        path = self.files[self._index]
        events = [SourceEvent("next_file", str(path))] if self._index else []
        try:
            self._audio = load_audio(path, self.max_s, target_hz=self.rate)
        except AudioInputError as err:
            self._audio = np.zeros(0, dtype=np.float32)
            return events + [SourceEvent("bad_file", f"{path}: {err}", reason=err.reason)]
        self._offset = 0
        if self._index == 0 or not self.realtime:
            self._t0, self._played = self._clock(), 0
        self.log.info("file_opened", path=str(path), duration_s=round(self._audio.size / self.rate, 3))
        return events


class DeviceSource:
    """Live input through PortAudio; the callback only copies into a queue, never blocks."""

    def __init__(self, device: str | int | None, frame_samples: int, rate_hz: int, on_overflow: Callable[[], None]) -> None:
        self.device, self.frame_samples, self.rate = device, frame_samples, rate_hz
        self._queue: queue.Queue[np.ndarray] = queue.Queue(maxsize=int(60 * rate_hz / frame_samples))
        self._on_overflow = on_overflow
        self._stream = None

    def open(self) -> None:
        import sounddevice

        self._stream = sounddevice.InputStream(device=self.device, channels=1, samplerate=self.rate,
                                               blocksize=self.frame_samples, dtype="float32", callback=self._callback)
        self._stream.start()

    def _callback(self, indata, frames_count, time_info, status) -> None:
        if status.input_overflow:
            self._on_overflow()
        try:
            self._queue.put_nowait(indata[:, 0].copy())
        except queue.Full:
            self._on_overflow()

    def read(self, max_wait_s: float) -> list[np.ndarray | SourceEvent]:
        try:
            blocks = [self._queue.get(timeout=max_wait_s)]
        except queue.Empty:
            return []
        while not self._queue.empty():
            blocks.append(self._queue.get_nowait())
        return blocks

    def close(self) -> None:
        if self._stream is not None:
            self._stream.stop()
            self._stream.close()
            self._stream = None


def describe_devices() -> str:
    """`--list-devices`: every PortAudio input device with its index and default rate."""
    import sounddevice

    lines = []
    for index, dev in enumerate(sounddevice.query_devices()):
        if dev["max_input_channels"] > 0:
            lines.append(f"{index:3d}  {dev['name']}  ({dev['max_input_channels']} ch, {dev['default_samplerate']:.0f} Hz)")
    return "\n".join(lines) or "no input device found"
