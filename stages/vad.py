"""VAD stage: Silero speech probabilities -> utterances, routed to the active worker.

Keeps every utterance until the sink acknowledges it (topic `ack`), and sends the pending ones
again when the supervisor routes to another worker or restarts a worker or the sink (a new
epoch), or when one waits too long; the sink drops duplicates. Pending utterances are spooled
to the run dir before they are sent, so a SIGKILLed VAD re-sends them when it comes back.
When `max_pending` utterances wait, the VAD stops reading audio (backpressure to capture)
rather than drop one. It also commits the capture chunk from which a successor must hear the
audio again (pipeline/replay.py): a restarted VAD asks capture to replay from there and rebuilds
the utterance that was being spoken.
"""

from __future__ import annotations

import math
import secrets
import time
from pathlib import Path

import numpy as np

from pipeline import frames, metrics, topology
from pipeline.cli import stage_main
from pipeline.config import PipelineConfig, VadConfig
from pipeline.delivery import Delivery
from pipeline.endpointing import TurnVerdict, close_after_ms, weigh
from pipeline.logs import get_logger
from pipeline.replay import ReplayOffset
from pipeline.runner import CONTROL, Output, Stage
from pipeline.segmenter import Segment, Segmenter
from pipeline.speculation import Speculation
from pipeline.silero import WINDOW_SAMPLES, SileroVad
from pipeline.transport import PortSpec

EOS_KEY = topology.SPOOL_END_OF_STREAM  # spool entry: the source is done (survives a restart for Drained)
DRAIN_RESEND_AFTER_S = 5.0  # while draining, an utterance without a transcript this long is sent again
AUDIO_RCVHWM = 64  # chunks (~2 s) queued in front of the VAD: how far ahead capture can run, what a
                   # capture restart can interleave, and so how far a committed offset can lag
MAX_HELD = 4 * AUDIO_RCVHWM  # capture frames held while the one before them is missing
AUDIO_KINDS = ("audio_chunk", "capture_gap", "end_of_stream", "replay_start")  # what capture sends


class VadStage(Stage):
    """Audio chunks in, utterances out to the routed worker: owns the segmentation, the pending
    utterances (pipeline/delivery.py: spooled, re-sent until acknowledged), the backpressure towards
    capture, and the routing of the front doors' utterances (port `requests`) with its own."""

    name = "vad"
    long_calls = False  # one 32 ms window per frame: handled inline (see Stage.long_calls)

    def __init__(self, cfg: VadConfig, sample_rate_hz: int, run_dir: Path, workers: list[str],
                 prob_fn=None, clock=time.monotonic_ns, source: str = "mic", lane: int = 0) -> None:
        self.cfg = cfg
        self.name = topology.lane_stage("vad", lane)
        self.source = source  # what the transcripts of this capture say they come from
        self.rate = sample_rate_hz
        self.window = WINDOW_SAMPLES[sample_rate_hz]
        # Acks and turn hints first (the runner serves inputs in this order): they are tiny, a
        # backlog of audio in --fast mode must not starve acks into needless re-sends, and a hint
        # waiting behind audio would hold a finished turn open.
        self.inputs = {
            "acks": PortSpec("sub", topology.events(run_dir), bind=False, subscribe=(b"ack",), kinds=("ack",)),
            "hints": PortSpec("pull", topology.hints(run_dir, lane), bind=True, kinds=("turn_hint",)),
            "audio": PortSpec("pull", topology.audio(run_dir, lane), bind=True, hwm=AUDIO_RCVHWM,
                              kinds=AUDIO_KINDS),
        }
        if lane == 0:  # the front doors' turns come to the first lane
            self.inputs["requests"] = PortSpec("pull", topology.requests(run_dir), bind=True, kinds=("utterance",))
        self.outputs = {w: PortSpec("push", topology.utterances(run_dir, w, lane), bind=True, blocking=False)
                        for w in workers}
        # Partials: queue of one, dropped when the worker has not taken the previous one yet.
        self.outputs |= {f"partial_{w}": PortSpec("push", topology.partials(run_dir, w, lane), bind=True,
                                                  blocking=False, hwm=1) for w in workers}
        self.outputs["replay"] = PortSpec("push", topology.replay(run_dir, lane), bind=False, blocking=False, hwm=1)
        # Chunk positions back to the start of the longest utterance (and its pre-roll): all a commit needs.
        kept_s = cfg.max_utterance_s + cfg.pre_roll_ms / 1000 + 1
        self._offset = ReplayOffset(topology.vad_offset(run_dir, lane), keep_chunks=int(kept_s * sample_rate_hz / self.window))
        self._held: dict[int, frames.Frame] = {}  # capture frames ahead of the next one expected, by seq
        self._held_at_last_tick = False
        self._prob_fn = prob_fn
        # Mean square below which a window is silence without Silero (RMS below the floor).
        self._floor_energy = None if cfg.silence_floor_dbfs is None else 10 ** (cfg.silence_floor_dbfs / 10)
        self._gated, self._vad_seconds = metrics.VAD_GATED.labels(self.name), metrics.VAD_SECONDS.labels(self.name)
        self._below_floor = False  # the last window was answered as silence without Silero
        self._clock = clock
        self._segmenter = Segmenter(cfg, sample_rate_hz)
        self._buffer = np.zeros(0, dtype=np.float32)
        self.delivery = Delivery(topology.vad_spool(run_dir, lane), self.name, workers, clock)
        # Random, not pid + wall clock: the published ids outlive a supervisor restart, and a pid
        # reused after a clock jump (or in a restarted container) must not mint an id seen before.
        self._session = secrets.token_hex(5)
        self._count = 0                     # ids minted
        self._closed = 0                    # utterances emitted
        self._open_id: str | None = None    # id of the utterance being spoken, minted at its first partial
        self._since_partial = 0             # samples since the last partial
        self._spec = Speculation()          # the copy sent at this pause, and the one the worker still has
        self._eos = False
        self._drained_sent = False
        self._draining = False
        self._last_audio_seq = 0
        self._chunk_ms = 32.0  # length of the last chunk, to size lost audio
        self.log = get_logger()

    def preload(self) -> None:
        if self._prob_fn is None:
            self._prob_fn = SileroVad()

    def start(self) -> None:
        for key, _ in self.delivery.load():
            self._eos = self._eos or key == EOS_KEY
        if self.delivery.pending or self._eos:
            self.log.info("spool_restored", pending=len(self.delivery), end_of_stream=self._eos)
        from_seq = self._offset.restore(self.delivery.end_seqs())
        if from_seq is not None:
            self.log.info("replay_wanted", from_seq=from_seq)

    def accepts(self, port: str) -> bool:
        """Backpressure: no more audio or requests while max_pending utterances wait for their
        transcript, except audio while a replay is awaited: its ReplayStart comes on the audio port,
        behind live audio that is dropped anyway (it comes again inside the replay); held back, a
        restarted VAD with a full spool never saw the replay begin."""
        if port == "audio" and self._offset.awaiting is not None:
            return True
        return port not in ("audio", "requests") or len(self.delivery) < self.cfg.max_pending

    def handle(self, port: str, frame: frames.Frame) -> list[Output]:
        if isinstance(frame, frames.ReplayStart):
            return self._on_replay_start(frame)
        if isinstance(frame, (frames.AudioChunk, frames.CaptureGap, frames.EndOfStream)):
            if self._offset.awaiting is not None:  # live audio before the replay starts: it comes again inside it
                metrics.FRAMES_DROPPED.labels(self.name, "awaiting_replay").inc()
                return []
            return [out for f in self._in_order(frame) for out in self._check_continuity(f.seq) + self._on_capture(f)]
        if isinstance(frame, frames.Ack):
            return self._on_ack(frame.utt_id)
        if isinstance(frame, frames.TurnHint):
            return self._on_turn_hint(frame)
        if isinstance(frame, frames.Route):
            return self._on_route(frame)
        if isinstance(frame, frames.Utterance) and port == "requests":
            return self._on_request(frame)
        return []

    def _on_request(self, utt: frames.Utterance) -> list[Output]:
        """A front door's utterance (stages/wyoming.py, stages/openai_api.py): routed like the VAD's
        own. A final is held until acknowledged; a speculative copy or a partial goes to the routed
        worker as it is."""
        worker = self.delivery.routed
        if utt.is_partial or utt.speculative:
            return [] if worker is None else [(f"partial_{worker}" if utt.is_partial else worker, utt)]
        if utt.utt_id in self.delivery:
            return []  # sent again by a front door still waiting: it is pending here already
        self.log.info("request_received", utt_id=utt.utt_id, duration_s=round(utt.end_s - utt.start_s, 3))
        metrics.UTTERANCES.labels(self.name, "request").inc()
        return self.delivery.add(utt)

    def _in_order(self, frame) -> list[frames.Frame]:
        """Capture frames in sequence order. A restarted capture's first frames can overtake the dead
        one's last (ZeroMQ fair-queues the two pipes; in --fast mode seconds of audio were queued):
        frames ahead wait here. Older numbers than the last processed (a replay answering a repeated
        request) are dropped; numbers that never come (frames that died in the dead capture's send
        queue) are given up on at the second tick (`_release_held`), and logged as `audio_lost`."""
        last = self._last_audio_seq
        if last and frame.seq <= last:
            metrics.FRAMES_DROPPED.labels(self.name, "already_heard").inc()
            return []
        if last and frame.seq > last + 1:
            self._held[frame.seq] = frame
            return self._release_held() if len(self._held) > MAX_HELD else []
        ready, following = [frame], frame.seq + 1
        while following in self._held:
            ready.append(self._held.pop(following))
            following += 1
        return ready

    def _release_held(self) -> list[frames.Frame]:
        held, self._held, self._held_at_last_tick = self._held, {}, False
        return [held[seq] for seq in sorted(held)]

    def _on_replay_start(self, start: frames.ReplayStart) -> list[Output]:
        if self._offset.awaiting is None or start.from_seq != self._offset.awaiting:
            return []  # an answer to an earlier request: its frames are older than what was heard
        self._offset.awaiting = None
        self._last_audio_seq = start.from_seq - 1  # a first_seq past it is a hole: logged as audio_lost
        self.log.info("replay_started", from_seq=start.from_seq, first_seq=start.first_seq)
        return []

    def _on_capture(self, frame) -> list[Output]:
        if isinstance(frame, frames.AudioChunk):
            return self._on_audio(frame)
        return self._on_break(frame)

    def _check_continuity(self, seq: int) -> list[Output]:
        """A restarted capture resumes its numbering: missing numbers are chunks lost in between."""
        last, self._last_audio_seq = self._last_audio_seq, seq
        if not last or seq <= last + 1:
            return []
        lost_ms = (seq - last - 1) * self._chunk_ms
        metrics.CAPTURE_GAP_SECONDS.labels(self.name).inc(lost_ms / 1000)
        self.log.warning("audio_lost", chunks=seq - last - 1, duration_ms=round(lost_ms, 1))
        return self._emit(self._segmenter.flush())  # what was heard before the hole is one utterance

    def _on_audio(self, chunk: frames.AudioChunk) -> list[Output]:
        self.last_seq = chunk.seq
        if (chunk.sample_rate_hz != self.rate or chunk.channels != 1 or len(chunk.pcm) % 4
                or len(chunk.pcm) > frames.MAX_AUDIO_CHUNK_S * self.rate * 4):
            metrics.BAD_INPUT.labels(self.name, "audio_format").inc()
            self.log.warning("audio_chunk_rejected", seq=chunk.seq, sample_rate_hz=chunk.sample_rate_hz,
                             channels=chunk.channels)
            return []
        samples = np.frombuffer(chunk.pcm, dtype=np.float32)
        self._chunk_ms = samples.size * 1000 / self.rate
        # One dot product instead of an isfinite pass per chunk: NaN and inf survive it.
        if not math.isfinite(float(np.dot(samples, samples))) and not np.isfinite(samples).all():
            metrics.BAD_INPUT.labels(self.name, "non_finite").inc()
            samples = np.nan_to_num(samples, nan=0.0, posinf=0.0, neginf=0.0)
        self._buffer = np.concatenate([self._buffer, samples])
        out: list[Output] = []
        closed_any = False
        while self._buffer.size >= self.window:
            window, self._buffer = self._buffer[:self.window], self._buffer[self.window:]
            prob = self._speech_prob(window)
            closed = self._segmenter.push(window, prob)
            if not closed and not self._segmenter.is_open:
                self._open_id = None  # a burst dropped as too short keeps no id
            out += self._emit(closed) + self._maybe_speculate()
            self._since_partial += window.size
            closed_any = closed_any or bool(closed)
        seg = self._segmenter
        self._offset.seen(chunk.seq, seg.position)
        preroll = self.cfg.pre_roll_ms * self.rate // 1000
        self._offset.commit(seg.open_start if seg.is_open else max(0, seg.position - preroll), now=closed_any)
        return out + self._maybe_partial()

    def _speech_prob(self, window: np.ndarray) -> float:
        """Silero's probability, or 0 without a call below the silence floor. Silero is recurrent:
        after a stretch it did not hear, it starts again from a clean state, as on a new stream."""
        if self._floor_energy is not None and float(np.dot(window, window)) < self._floor_energy * window.size:
            self._below_floor = True
            self._gated.inc()
            return 0.0
        if self._below_floor and hasattr(self._prob_fn, "reset"):
            self._prob_fn.reset()
        self._below_floor = False
        started = time.perf_counter()
        prob = self._prob_fn(window, self.rate)
        self._vad_seconds.observe(time.perf_counter() - started)
        return prob

    def _maybe_partial(self) -> list[Output]:
        """Interim text while speech goes on; never during the silence that may end it."""
        seg, interval = self._segmenter, self.cfg.partial_interval_ms * self.rate // 1000
        if (not interval or not seg.is_open or seg.in_trailing_silence or self.delivery.routed is None
                or seg.open_samples * 1000 < self.cfg.partial_min_ms * self.rate or self._since_partial < interval):
            return []
        self._since_partial = 0
        start_s = seg.open_start / self.rate
        partial = frames.Utterance(self._opened(), start_s, start_s + seg.open_samples / self.rate, time.time(),
                                   self.rate, seg.open_audio().tobytes(), is_partial=True, source=self.source)
        return [(f"partial_{self.delivery.routed}", partial)]

    def _maybe_speculate(self) -> list[Output]:
        """Speech paused long enough that it may be the end: let the worker decode it now."""
        seg = self._segmenter
        if not seg.is_open or not seg.in_trailing_silence:
            if self._spec.resumed():  # speech resumed: the earlier speculative copy no longer stands
                self._judge(None, speculated=False)
            return []
        if (not self.cfg.speculate_after_ms or self.delivery.routed is None
                or seg.trailing_silence_ms < self.cfg.speculate_after_ms):
            return []
        if not self._spec.may_send(self._clock()):
            if not self._spec.samples:  # the worker still has an earlier copy: this one goes once it answers
                self._judge(None, speculated=True)
            return []
        utt_id = self._opened()
        audio = seg.open_audio()
        self._spec.sent(utt_id, audio.size, self._clock())
        self._judge(None, speculated=True)  # wait for the worker's verdict (up to max_silence_ms)
        start_s = seg.open_start / self.rate
        spec = frames.Utterance(utt_id, start_s, start_s + audio.size / self.rate, time.time(), self.rate,
                                audio.tobytes(), speculative=True, source=self.source,
                                pause_samples=seg.trailing_silence_samples)
        return [(self.delivery.routed, spec)]

    def _on_turn_hint(self, hint: frames.TurnHint) -> list[Output]:
        """The worker judged the text of the copy sent at this pause: close now, or wait on."""
        stands = self._spec.answered(hint.utt_id, hint.speculated_samples)
        if self.cfg.endpoint != "text" or hint.utt_id != self._open_id or not stands:
            return []  # stale: speech resumed, or the utterance has closed already
        turn_probability = hint.turn_probability if hint.turn_probability >= 0 else None
        verdict = weigh(TurnVerdict(hint.complete, hint.reason), hint.end_logprob, self.cfg.turn_min_logprob,
                        turn_probability, self.cfg.turn_model_min_probability,
                        self.cfg.turn_model_sure_probability)
        self.log.info("turn_judged", utt_id=hint.utt_id, complete=verdict.complete, reason=verdict.reason,
                      end_logprob=round(hint.end_logprob, 3), turn_probability=turn_probability,
                      silence_ms=round(self._segmenter.trailing_silence_ms))
        if self._judge(verdict, speculated=True) == 0:
            return self._emit(self._segmenter.close_now("turn_complete"))
        return []

    def _judge(self, verdict: TurnVerdict | None, speculated: bool) -> int:
        """Move the silence that closes the open utterance (pipeline/endpointing.py)."""
        if self.cfg.endpoint != "text":
            return self.cfg.min_silence_ms
        after_ms = close_after_ms(self.cfg.min_silence_ms, self.cfg.hold_silence_ms, self.cfg.max_silence_ms,
                                  speculated, verdict)
        self._segmenter.close_after_ms = after_ms
        self._segmenter.close_reason = {self.cfg.max_silence_ms: "max_silence",
                                        self.cfg.hold_silence_ms: "hold_silence"}.get(after_ms, "silence")
        return after_ms

    def _opened(self) -> str:
        """The id of the utterance being spoken, minted (and logged) at its first partial or speculative copy."""
        if self._open_id is None:
            self._open_id = self._mint_id()
            start_s = round(self._segmenter.open_start / self.rate, 3)
            self.log.info("utterance_opened", utt_id=self._open_id, start_s=start_s)
        return self._open_id

    def _mint_id(self) -> str:
        self._count += 1
        return f"{self._session}-{self._count:06d}"

    def _on_break(self, frame) -> list[Output]:
        """A gap or the end of the stream closes the open utterance; Silero restarts clean."""
        closed = self._segmenter.flush()
        self._buffer = np.zeros(0, dtype=np.float32)
        if hasattr(self._prob_fn, "reset"):
            self._prob_fn.reset()
        if isinstance(frame, frames.CaptureGap):
            self.log.info("capture_gap", duration_ms=frame.duration_ms, reason=frame.reason)
        else:
            self.log.info("end_of_stream", source=frame.source, utterances=self._closed)
            self._eos = True
            self.delivery.spool.put(EOS_KEY, b"")
        out = self._emit(closed)
        self._offset.commit_seq(frame.seq + 1)  # everything up to the break is in a closed utterance
        return out + self._maybe_drained()

    def _emit(self, segments: list[Segment]) -> list[Output]:
        if not segments:
            return []
        out = []
        for seg in segments:
            utt_id, self._open_id, self._since_partial = self._open_id or self._mint_id(), None, 0
            speculated = self._spec.closed()  # reset whenever speech resumes: if set, only silence followed it
            self._closed += 1
            utt = frames.Utterance(utt_id, seg.start_sample / self.rate, seg.end_sample / self.rate, time.time(),
                                   self.rate, seg.pcm.tobytes(), speculated_samples=speculated,
                                   end_seq=self._last_audio_seq, source=self.source)
            metrics.UTTERANCES.labels(self.name, seg.reason).inc()
            self.log.info("utterance_closed", utt_id=utt.utt_id, duration_s=round(utt.end_s - utt.start_s, 3),
                          reason=seg.reason, silence_ms=round(seg.silence_samples * 1000 / self.rate))
            out += self.delivery.add(utt)
        return out

    def sent(self, port: str, frame: frames.Frame) -> None:
        self.delivery.sent(frame)

    def _on_ack(self, utt_id: str) -> list[Output]:
        self.delivery.ack(utt_id)
        return self._maybe_drained()

    def _on_route(self, route: frames.Route) -> list[Output]:
        if (route.active, route.epoch) != (self.delivery.active, self.delivery.epoch):
            self._spec.rerouted()
        return self.delivery.route(route)

    def tick(self, now_ns: int) -> list[Output]:
        """Ask capture for the replay until it starts; send again what never left, and what has
        waited too long for its transcript (while draining, DRAIN_RESEND_AFTER_S: the drain must
        not end on an utterance sent into the void)."""
        asked = [] if self._offset.awaiting is None else [("replay", frames.ReplayRequest(self._offset.awaiting))]
        gave_up = self._release_held() if self._held and self._held_at_last_tick else []
        self._held_at_last_tick = bool(self._held)
        asked += [out for f in gave_up for out in self._check_continuity(f.seq) + self._on_capture(f)]
        limit_s = min(self.cfg.resend_after_s, DRAIN_RESEND_AFTER_S) if self._draining else self.cfg.resend_after_s
        return asked + self.delivery.resend_late(now_ns, limit_s) + self._maybe_drained()

    def _maybe_drained(self) -> list[Output]:
        if self._eos and not self.delivery.pending and not self._drained_sent:
            self._drained_sent = True
            return [(CONTROL, frames.Drained(self._closed))]
        return []

    def begin_drain(self) -> list[Output]:
        self._draining = True
        return self._emit(self._segmenter.flush())

    def drained(self) -> bool:
        return not self.delivery.pending


def make_stage(cfg: PipelineConfig, args) -> VadStage:
    run_dir = cfg.resolved_run_dir()
    return VadStage(cfg.vad, cfg.audio.sample_rate_hz, run_dir, topology.enabled_workers(cfg),
                    source=cfg.audio.source_label(args.lane), lane=args.lane)


def main() -> None:
    stage_main("vad", make_stage)


if __name__ == "__main__":
    main()
