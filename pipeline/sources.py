"""Audio sources for the capture stage: files (tests, replays, --test-mode) and a live device.

Both yield 16 kHz mono float32 blocks of `frame_samples`; the capture stage numbers them.
"""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from pipeline.audio import AudioInputError, load_audio
from pipeline.logs import get_logger
from pipeline.quiet_wake import QuietWake

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".aiff", ".aif"}


class SourceEvent:
    """What a source hands the capture stage besides audio blocks."""

    def __init__(self, kind: str, detail: str = "", reason: str = "", gap_ms: float = 0.0) -> None:
        self.kind = kind            # "next_file" | "bad_file" | "end" | "gap"
        self.detail = detail
        self.reason = reason
        self.gap_ms = gap_ms


def list_audio_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    return [path]


class FileSource:
    """Plays files one after another, at real-time pace or as fast as they are taken."""

    def __init__(self, path: Path, frame_samples: int, rate_hz: int, realtime: bool, max_s: float,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 loop: bool = False) -> None:
        self.files = list_audio_files(path)
        self.loop = loop  # after the last file, the first again (never "end")
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
        self._opened = 0  # files opened so far (laps included)
        self._lap_played = False  # a file of this lap decoded (loop mode)
        self.finished = False
        self._decoded: tuple[int, np.ndarray | AudioInputError] | None = None  # (file index, audio) ahead of time
        self.log = get_logger()

    def decode_ahead(self, index: int = 0) -> None:
        """Decode a file before it is needed (a spare capture: resuming a long file is then instant)."""
        if 0 <= index < len(self.files):
            try:
                self._decoded = (index, load_audio(self.files[index], self.max_s, target_hz=self.rate))
            except AudioInputError as err:
                self._decoded = (index, err)

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

    def position(self) -> dict:
        return {"file_index": self._index, "offset": self._offset, "finished": self.finished}

    def resume(self, position: dict) -> list[np.ndarray | SourceEvent]:
        """After a capture restart: carry on where the previous process was, not from the top."""
        index, offset = int(position.get("file_index", -1)), int(position.get("offset", 0))
        if position.get("finished"):
            self._index = len(self.files) - 1
            return self._next_file()  # the end again: the VAD may have missed it
        if index < 0:
            return []
        self._index = index - 1
        events = self._next_file()
        self._offset = min(offset, self._audio.size)
        self._t0, self._played = self._clock(), 0  # real-time pace counts from now
        return events

    def rewind(self, position: dict, catch_up_samples: int = 0) -> list[SourceEvent]:
        """Back to a position this source was at before (a checkpoint), to read the same audio again
        under the same chunk numbers: no event is repeated, except a file that can no longer be read.
        At real-time pace the first `catch_up_samples` (already played once) come without waiting."""
        self.finished = False
        self._index = int(position.get("file_index", -1)) - 1
        if self._index < -1:  # before the first file: the next read opens it, as it did the first time
            self._index, self._opened, self._audio, self._offset = -1, 0, np.zeros(0, dtype=np.float32), 0
            return []
        events = [e for e in self._next_file() if e.kind == "bad_file"]
        self._offset = min(int(position.get("offset", 0)), self._audio.size)
        self._t0, self._played = self._clock() - catch_up_samples / self.rate, 0
        return events

    def _next_file(self) -> list[np.ndarray | SourceEvent]:
        if self.finished:
            return []
        self._index += 1
        if self._index >= len(self.files) and self.loop and self._lap_played:
            self._index, self._lap_played = 0, False  # a lap with no playable file ends the loop
            self.log.info("source_looped", files=len(self.files))
        if self._index >= len(self.files):
            self.finished = True
            return [SourceEvent("end", f"{len(self.files)} file(s)")]
        path = self.files[self._index]
        events = [SourceEvent("next_file", str(path))] if self._index or self._opened else []
        self._opened += 1
        try:
            self._audio = self._load(self._index)
        except AudioInputError as err:
            self._audio = np.zeros(0, dtype=np.float32)
            return events + [SourceEvent("bad_file", f"{path}: {err}", reason=err.reason)]
        self._offset, self._lap_played = 0, True
        if self._index == 0 or not self.realtime:
            self._t0, self._played = self._clock(), 0
        self.log.info("file_opened", path=str(path), duration_s=round(self._audio.size / self.rate, 3))
        return events

    def _load(self, index: int) -> np.ndarray:
        decoded, self._decoded = self._decoded, None
        if decoded is None or decoded[0] != index:
            return load_audio(self.files[index], self.max_s, target_hz=self.rate)
        if isinstance(decoded[1], AudioInputError):
            raise decoded[1]
        return decoded[1]


class DeviceUnavailableError(RuntimeError):
    """The configured input device is missing or cannot be opened; the message lists the devices."""


class DeviceSource:
    """Live input through PortAudio; the callback only copies into a queue, never blocks.

    Opens at 16 kHz when the device allows it, else at its own rate and resamples with soxr.
    When the stream dies or stops delivering (headset unplugged), it is re-opened every
    `reopen_every_s` and the lost stretch is reported as a gap. After a long floor-quiet stretch
    (`quiet`, pipeline/quiet_wake.py) the reader is woken only every `quiet_wake_s`, or at once by sound,
    and what piled up is returned as one array of whole frames (at most `max_burst_frames`), not frame by frame.
    """

    def __init__(self, device: str | int | None, frame_samples: int, rate_hz: int, on_overflow: Callable[[], None],
                 stall_s: float = 2.0, reopen_every_s: float = 1.0, sd=None,
                 clock: Callable[[], float] = time.monotonic, quiet: QuietWake | None = None,
                 quiet_wake_s: float = 0.5, max_burst_frames: int = 1) -> None:
        self.device, self.frame_samples, self.rate = device, frame_samples, rate_hz
        self._queue: queue.Queue[np.ndarray] = queue.Queue(maxsize=int(60 * rate_hz / frame_samples))
        self._wake = threading.Event()  # set by the callback for a block the reader must take now
        self._quiet = quiet or QuietWake(None, 0, rate_hz)
        self._quiet_wake_s = quiet_wake_s
        self._max_burst_frames = max(1, max_burst_frames)
        self._on_overflow = on_overflow
        self._sd = sd
        self._stream = None
        self._resampler = None
        self._pending = np.zeros(0, dtype=np.float32)
        self._clock = clock
        self._stall_s, self._reopen_every_s = stall_s, reopen_every_s
        self._last_block = 0.0
        self._lost_at: float | None = None
        self._next_reopen = 0.0
        self.log = get_logger()

    def open(self) -> None:
        sd = self._sd = self._sd or _sounddevice()
        try:
            rate = self._usable_rate(sd)
            # latency="low": the device's low-latency setting instead of sounddevice's "high" default;
            # through PulseAudio it delivered a click 0-20 ms sooner at the same CPU (bench.audio_path).
            self._stream = sd.InputStream(device=self.device, channels=1, samplerate=rate, dtype="float32",
                                          blocksize=int(rate * self.frame_samples / self.rate), latency="low",
                                          callback=self._callback)
            self._stream.start()
        except Exception as err:  # PortAudio raises several types; all mean "this device, not now"
            self._stream = None
            raise DeviceUnavailableError(f"cannot open input device {self.device!r}: {err}\n"
                                         f"available input devices:\n{describe_devices(sd)}") from None
        self._resampler = None if rate == self.rate else _stream_resampler(rate, self.rate)
        self._last_block = self._clock()
        self.log.info("device_opened", device=self.device, device_rate_hz=rate, resampled=rate != self.rate)

    def _usable_rate(self, sd) -> int:
        try:
            sd.check_input_settings(device=self.device, channels=1, samplerate=self.rate, dtype="float32")
            return self.rate
        except Exception:  # the device cannot do 16 kHz: use its own rate and resample
            return int(sd.query_devices(self.device, "input")["default_samplerate"])

    def _callback(self, indata, frames_count, time_info, status) -> None:
        if status.input_overflow:
            self._on_overflow()
        block = indata[:, 0].copy()
        try:
            self._queue.put_nowait(block)
        except queue.Full:
            self._on_overflow()
        if self._quiet.wake_now(block):
            self._wake.set()

    @property
    def quiet(self) -> bool:
        """The microphone has been below the silence floor for long: blocks may pile up a while."""
        return self._quiet.quiet

    def read(self, max_wait_s: float) -> list[np.ndarray | SourceEvent]:
        if self._stream is None:
            return self._try_reopen(max_wait_s)
        self._wake.wait(min(max_wait_s, self._quiet_wake_s) if self._quiet.quiet else max_wait_s)
        self._wake.clear()  # before draining: a block put after this sets it again, and is read next time
        blocks = []
        while not self._queue.empty():
            blocks.append(self._queue.get_nowait())
        if not blocks:
            return self._check_stalled()
        self._last_block = self._clock()
        # Still quiet after the drain: no block in it was sound (one would have reset the stretch).
        return self._rechunk(blocks, self._max_burst_frames if self._quiet.quiet else 1)

    def _rechunk(self, blocks: list[np.ndarray], frames_per_chunk: int = 1) -> list[np.ndarray | SourceEvent]:
        audio = np.concatenate(blocks)
        if self._resampler is not None:
            audio = self._resampler.resample_chunk(audio)
        audio = np.concatenate([self._pending, audio.astype(np.float32, copy=False)])
        whole = audio.size // self.frame_samples * self.frame_samples
        self._pending = audio[whole:]
        step = self.frame_samples * frames_per_chunk
        return [audio[start:min(start + step, whole)] for start in range(0, whole, step)]

    def _check_stalled(self) -> list[np.ndarray | SourceEvent]:
        active = getattr(self._stream, "active", True)
        if active and self._clock() - self._last_block < self._stall_s:
            return []
        self.log.error("device_lost", device=self.device, active=active)
        self.close()
        self._lost_at = self._last_block
        return []

    def _try_reopen(self, max_wait_s: float) -> list[np.ndarray | SourceEvent]:
        now = self._clock()
        if now < self._next_reopen:
            time.sleep(min(max_wait_s, self._next_reopen - now))
            return []
        self._next_reopen = now + self._reopen_every_s
        try:
            self.open()
        except DeviceUnavailableError:
            return []
        gap_ms = (self._clock() - (self._lost_at or now)) * 1000
        self._lost_at = None
        return [SourceEvent("gap", f"device {self.device!r} re-opened", reason="device_reopened", gap_ms=gap_ms)]

    def close(self) -> None:
        if self._stream is not None:
            try:
                self._stream.stop()
                self._stream.close()
            except Exception:  # the device may already be gone; nothing more to release
                pass
            self._stream = None
        self._queue = queue.Queue(maxsize=self._queue.maxsize)


def _sounddevice():
    import sounddevice

    return sounddevice


def _stream_resampler(in_hz: int, out_hz: int):
    import soxr

    return soxr.ResampleStream(in_hz, out_hz, 1, dtype="float32")


def describe_devices(sd=None) -> str:
    """`--list-devices`: every PortAudio input device with its index and default rate."""
    sd = sd or _sounddevice()
    lines = []
    for index, dev in enumerate(sd.query_devices()):
        if dev["max_input_channels"] > 0:
            lines.append(f"{index:3d}  {dev['name']}  ({dev['max_input_channels']} ch, {dev['default_samplerate']:.0f} Hz)")
    return "\n".join(lines) or "no input device found"
