"""Capture stage: microphone or files -> numbered 16 kHz mono float32 AudioChunks.

A file that cannot be read is logged, counted and skipped; the next one plays. Between files a
CaptureGap tells the VAD to close the open utterance, and after the last an EndOfStream.
A cursor in the run dir (chunk number, file position, wall time) lets a restarted capture
carry on: files resume where they were, and the microphone's restart gap is logged and sent
as a CaptureGap with its duration. Chunks that were queued but never reached the VAD show up
there as a jump in numbering (logged as `audio_lost`).

The last `audio.replay_s` of what was sent is kept: a restarted VAD asks (`ReplayRequest`) for
everything after its committed offset and gets a `ReplayStart` and those frames again, in order,
so the speech being spoken when the VAD died is not lost. A file source also notes where recent
chunk numbers start (pipeline/rewind.py): a restarted capture, or a replay its memory no longer
holds, reads the file again from there under the same numbers.
"""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path

import numpy as np

from pipeline import frames, metrics, topology
from pipeline.cli import stage_main
from pipeline.config import AudioConfig, PipelineConfig, VadConfig
from pipeline.durable import Cursor
from pipeline.exitcodes import ExitCode
from pipeline.logs import get_logger
from pipeline.quiet_wake import QuietWake
from pipeline.rewind import CHECKPOINT_EVERY, Checkpoints
from pipeline.runner import Output, Stage, StageStartError
from pipeline.sources import DeviceSource, DeviceUnavailableError, FileSource, SourceEvent
from pipeline.transport import PortSpec

AUDIO_HWM = 64  # chunks (about 2 s) queued towards the VAD before capture waits
QUIET_MARGIN_MS = 500  # floor-quiet this much longer than the longest closing silence before blocks may wait
DEVICE_CURSOR_EVERY_S = 0.5  # a file write per 32 ms chunk was a sizeable part of idle listening


class CaptureStage(Stage):
    """The source: microphone or files to numbered 32 ms AudioChunks (a quiet microphone's bursts as one
    longer chunk); owns the device, the file position and the cursor that lets a restarted capture carry on."""

    name = "capture"
    long_calls = False  # produce() returns within max_wait_s: inline (see Stage.long_calls)
    is_source = True

    def __init__(self, cfg: AudioConfig, run_dir: Path, clock=time.monotonic, vad: VadConfig | None = None,
                 lane: int = 0) -> None:
        self.cfg = cfg
        self.name, self.device = topology.lane_stage("capture", lane), cfg.devices[lane]
        self.vad = vad or VadConfig()  # its silence floor and longest closing silence: when quiet may pile up
        self.frame_samples = cfg.sample_rate_hz * cfg.frame_ms // 1000
        # A short queue: what a crash of this process takes with it stays small.
        self.outputs = {"audio": PortSpec("push", topology.audio(run_dir, lane), bind=False, hwm=AUDIO_HWM)}
        self.inputs = {"replay": PortSpec("pull", topology.replay(run_dir, lane), bind=True, kinds=("replay_request",))}
        self._sent: deque[frames.Frame] = deque()  # the last replay_s of audio (quiet bursts are long frames)
        self._sent_samples, self._replay_samples = 0, int(cfg.replay_s * cfg.sample_rate_hz)
        self.source: FileSource | DeviceSource | None = None
        self._cursor = Cursor(topology.capture_cursor(run_dir, lane))
        self._vad_offset = Cursor(topology.vad_offset(run_dir, lane))  # read only: where a rewind must reach back to
        self._keep_points = int(cfg.replay_s * 1000 / cfg.frame_ms / CHECKPOINT_EVERY) + 2
        self._checkpoints = Checkpoints(self._keep_points)  # file sources: replay by reading again
        self._resumed: list[SourceEvent] = []  # sent by the first produce() after a restart
        self._seq = 0
        self._clock = clock
        self._cursor_due = 0.0  # monotonic s: when a microphone's cursor is saved next
        self._overflows = self._overflows_logged = 0
        self.log = get_logger()

    def preload(self) -> None:
        """Files only (a microphone is opened once, by the active process): list and decode the first."""
        if self.cfg.source and Path(self.cfg.source).exists():
            self._open_source()
            self.source.decode_ahead(0)

    def start(self) -> None:
        if self.source is None:
            self._open_source()
        previous = self._cursor.load()
        if previous:
            self._resume(previous)

    def _resume(self, previous: dict) -> None:
        if isinstance(self.source, FileSource) and self._rewind_after_restart(previous):
            return
        # A microphone's cursor may be DEVICE_CURSOR_EVERY_S old: number on past anything the dead
        # process may have sent since, so the VAD never takes new audio for old (it orders by number).
        skip = 0 if isinstance(self.source, FileSource) else int(DEVICE_CURSOR_EVERY_S * 1000 / self.cfg.frame_ms) + 1
        self._seq = int(previous.get("seq", 0)) + skip
        gap_ms = max(0.0, (time.time() - float(previous.get("wall_s", time.time()))) * 1000)
        self._resumed = [SourceEvent("gap", "capture restarted", "restart", gap_ms)]
        if isinstance(self.source, FileSource):
            self._resumed += self.source.resume(previous)
        self.log.warning("capture_resumed", gap_ms=round(gap_ms, 1), **previous)

    def _rewind_after_restart(self, previous: dict) -> bool:
        """A file source reads again from the newest checkpoint at or before the VAD's committed
        offset: what died in the dead capture's send queue is not lost, and nothing is a gap."""
        points = Checkpoints(self._keep_points, previous.get("checkpoints"))
        committed = (self._vad_offset.load() or {}).get("seq")
        wanted = int(previous.get("seq", 0)) + 1
        point = points.at_or_before(min(wanted, committed) if isinstance(committed, int) else wanted)
        if point is None:
            return False
        self.log.warning("capture_resumed", rewound_to_seq=point[0], vad_committed_seq=committed,
                         **previous | {"checkpoints": len(points.saved())})
        self._checkpoints, self._seq = points, int(previous.get("seq", 0))
        self._rewind_to(point)
        return True

    def _rewind_to(self, point: tuple[int, dict]) -> None:
        seq, position = point
        self._checkpoints.forget_from(seq)
        while self._sent and self._sent[-1].seq >= seq:
            self._sent_samples -= _samples(self._sent.pop())  # about to be read, numbered and kept again
        heard_again = max(0, self._seq - seq + 1) * self.frame_samples  # sent before: no real-time wait for it
        self._seq, self.exhausted = seq - 1, False
        self._resumed = list(self.source.rewind(position, catch_up_samples=heard_again))

    def _open_source(self) -> None:
        if self.cfg.source:
            path = Path(self.cfg.source)
            if not path.exists():
                raise StageStartError(f"audio source {path} does not exist", ExitCode.CONFIG_ERROR)
            self.source = FileSource(path, self.frame_samples, self.cfg.sample_rate_hz,
                                     self.cfg.pace == "realtime", self.cfg.max_file_s, loop=self.cfg.loop)
            self.log.info("capture_files", path=str(path), files=len(self.source.files), pace=self.cfg.pace)
            return
        floor = self.vad.silence_floor_dbfs if self.cfg.quiet_wake_ms else None
        quiet = QuietWake(floor, max(self.vad.min_silence_ms, self.vad.max_silence_ms) + QUIET_MARGIN_MS,
                          self.cfg.sample_rate_hz)
        self.source = DeviceSource(self.device, self.frame_samples, self.cfg.sample_rate_hz, self._on_overflow,
                                   quiet=quiet, quiet_wake_s=self.cfg.quiet_wake_ms / 1000,
                                   max_burst_frames=int(frames.MAX_AUDIO_CHUNK_S * 1000 // self.cfg.frame_ms))
        try:
            self.source.open()
        except DeviceUnavailableError as err:
            raise StageStartError(str(err)) from None  # transient: a headset may be plugged in later

    def produce(self, max_wait_s: float) -> list[Output]:
        # Everything produced so far has been handed to ZeroMQ (the runner flushes first).
        self._save_cursor()
        if self._resumed:
            events, self._resumed = self._resumed, []
            return [("audio", self._to_frame(e)) for e in events]
        if self._overflows != self._overflows_logged:
            self.log.warning("input_overflow", total=self._overflows)
            self._overflows_logged = self._overflows
        out: list[Output] = []
        if isinstance(self.source, FileSource) and not self.source.finished:
            self._checkpoints.note(self._seq + 1, self.source.position())
        for item in self.source.read(max_wait_s):
            out.append(("audio", self._to_frame(item)))
        return out

    def handle(self, port: str, frame: frames.Frame) -> list[Output]:
        """A (re)started VAD's ReplayRequest: the frames it asks for again, from the replay buffer."""
        if not isinstance(frame, frames.ReplayRequest):
            return []
        kept = [f for f in self._sent if f.seq >= frame.from_seq]
        first = kept[0].seq if kept else self._seq + 1
        point = self._checkpoints.at_or_before(frame.from_seq) if isinstance(self.source, FileSource) else None
        if first > frame.from_seq and point is not None:
            self._rewind_to(point)  # the memory buffer died with an earlier capture: read the file again
            self.log.info("replay_rewound", from_seq=frame.from_seq, rewound_to_seq=point[0])
            return [("audio", frames.ReplayStart(frame.from_seq, frame.from_seq))]
        if first > frame.from_seq:
            self.log.warning("replay_truncated", from_seq=frame.from_seq, first_seq=first,
                             lost_ms=round((first - frame.from_seq) * self.cfg.frame_ms, 1))
        self.log.info("replay_sent", from_seq=frame.from_seq, frames=len(kept))
        metrics.REPLAYED_FRAMES.labels(self.name).inc(len(kept))
        return [("audio", frames.ReplayStart(frame.from_seq, first))] + [("audio", f) for f in kept]

    def _to_frame(self, item: np.ndarray | SourceEvent) -> frames.Frame:
        frame = self._make_frame(item)
        if self.cfg.replay_s:
            self._sent.append(frame)
            self._sent_samples += _samples(frame)
            while self._sent_samples > self._replay_samples and len(self._sent) > 1:
                self._sent_samples -= _samples(self._sent.popleft())
        return frame

    def _make_frame(self, item: np.ndarray | SourceEvent) -> frames.Frame:
        self._seq += 1
        self.last_seq = self._seq
        if isinstance(item, np.ndarray):
            return frames.AudioChunk(self._seq, time.monotonic_ns(), time.time(), self.cfg.sample_rate_hz, 1,
                                     item.astype(np.float32).tobytes())
        if item.kind == "end":
            self.exhausted = True
            self.log.info("end_of_source", detail=item.detail)
            return frames.EndOfStream(self._seq, item.detail)
        if item.kind == "bad_file":
            metrics.BAD_INPUT.labels(self.name, item.reason).inc()
            self.log.error("audio_file_rejected", reason=item.reason, detail=item.detail)
        if item.kind == "gap":
            metrics.CAPTURE_GAP_SECONDS.labels(self.name).inc(item.gap_ms / 1000)
            self.log.warning("capture_gap", reason=item.reason, gap_ms=round(item.gap_ms, 1))
        return frames.CaptureGap(self._seq, item.gap_ms, item.kind)

    def _save_cursor(self) -> None:
        """Files: every call (a restart resumes at the very sample). A microphone: at most every
        DEVICE_CURSOR_EVERY_S; a restart then numbers on from a slightly older chunk, and the
        restart gap it reports is measured from that older save (up to that much too long,
        never too short)."""
        now = self._clock()
        if isinstance(self.source, FileSource):
            self._cursor.save({"seq": self._seq, "wall_s": time.time(), **self.source.position(),
                               "checkpoints": self._checkpoints.saved()})
        elif now >= self._cursor_due:
            self._cursor.save({"seq": self._seq, "wall_s": time.time()})
            self._cursor_due = now + DEVICE_CURSOR_EVERY_S

    def _on_overflow(self) -> None:
        """PortAudio's thread: only count here; produce() logs the total now and then."""
        metrics.CAPTURE_OVERFLOWS.labels(self.name).inc()
        self._overflows += 1

    def close(self) -> None:
        if isinstance(self.source, DeviceSource):
            self.source.close()


def _samples(frame: frames.Frame) -> int:
    return len(frame.pcm) // 4 if isinstance(frame, frames.AudioChunk) else 0


def make_stage(cfg: PipelineConfig, args) -> CaptureStage:
    return CaptureStage(cfg.audio, cfg.resolved_run_dir(), vad=cfg.vad, lane=args.lane)


def main() -> None:
    stage_main("capture", make_stage)


if __name__ == "__main__":
    main()
