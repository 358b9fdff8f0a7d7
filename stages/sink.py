"""Sink stage: publishes each transcript once on topic `transcript`, acknowledges every result.

Duplicates (an utterance re-sent after a failover) are dropped here but acknowledged again,
in case the first acknowledgement was missed. The ids already published are appended to a file
in the run dir, so a SIGKILLed and restarted sink still publishes each utterance only once.
Each final is numbered and kept in the history file before it is published, for subscribers
that missed it (pipeline/history.py); every heartbeat says the last number on `transcript.history`.
Acknowledgements (and a copy of each final, for the supervisor's test mode) go on a private ipc
socket, so the public one carries transcripts only and can require CURVE keys.
With `--print json`, transcripts also go to stdout as one JSON object per line; with `--print live`,
as a terminal view in which the interim text updates in place (pipeline/terminal.py). Logs go to stderr.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from pipeline import frames, metrics, topology
from pipeline.cli import stage_main
from pipeline.config import PipelineConfig
from pipeline.durable import IdLog
from pipeline.history import TranscriptHistory
from pipeline.logs import get_logger
from pipeline.runner import Output, Stage
from pipeline.terminal import TranscriptView
from pipeline.transport import PortSpec

SEEN_LIMIT = 100_000  # utterance ids remembered for de-duplication (~4 MB)


class SinkStage(Stage):
    """Transcripts in, published once on the public topic: owns de-duplication (the published ids,
    on disk) and the acknowledgements that let the VAD forget an utterance."""

    name = "sink"
    long_calls = False  # one transcript per frame: handled inline (see Stage.long_calls)

    def __init__(self, run_dir: Path, public: PortSpec, view: TranscriptView | None = None, join_s: float = 0.0) -> None:
        self.inputs = {"results": PortSpec("pull", topology.results(run_dir), bind=True, kinds=("transcript",))}
        self.outputs = {"public": public,
                        "internal": PortSpec("pub", topology.events(run_dir), bind=True, blocking=False)}
        self.view = view  # stdout: None = nothing printed
        self.join_s = join_s
        self._seen_path = topology.published_ids(run_dir)
        self._seen: IdLog | None = None
        self._history_path = topology.history(run_dir)
        self._history: TranscriptHistory | None = None
        self.log = get_logger()

    def start(self) -> None:
        self._seen = IdLog(self._seen_path, SEEN_LIMIT)
        self._history = TranscriptHistory(self._history_path)
        for entry in self._history.entries:  # in the history = published, even if the sink died before sending it
            if entry.utt_id not in self._seen:
                self._seen.add(entry.utt_id)
        if len(self._seen):
            self.log.info("published_ids_loaded", count=len(self._seen), history=self._history.id,
                          last_pub_seq=self._history.last_seq)
        # Sockets are bound already; this only gives subscribers time to (re)connect. No signal
        # exists for "every subscriber is back": PUB does not know who will subscribe.
        time.sleep(self.join_s)

    def handle(self, port: str, frame: frames.Frame) -> list[Output]:
        if not isinstance(frame, frames.Transcript):
            return []
        if frame.is_partial:
            return self._partial(frame)
        ack = ("internal", frames.Ack(frame.utt_id))
        if frame.utt_id in self._seen:
            metrics.DUPLICATES.labels(self.name).inc()
            self.log.info("duplicate_dropped", utt_id=frame.utt_id, worker=frame.worker)
            # Not published again; repeated on the private socket, for a front door that missed the
            # first copy (it re-sent its turn) and would otherwise take the ack alone for non-speech.
            return [("internal", frame), ack] if frame.is_speech else [ack]
        if not frame.is_speech:
            metrics.NON_SPEECH.labels(self.name).inc()
            self.log.info("non_speech_dropped", utt_id=frame.utt_id)
            self._seen.add(frame.utt_id)
            return [ack]
        published = self._history.numbered(dataclasses.replace(frame, t_published_wall_s=time.time()))
        latency_s = published.t_published_wall_s - published.t_closed_wall_s
        metrics.PUBLISHED.labels(self.name).inc()
        metrics.E2E_LATENCY.labels(self.name).observe(max(0.0, latency_s))
        self.log.info("transcript_published", utt_id=frame.utt_id, worker=frame.worker, model=frame.model_used,
                      close_to_publish_s=round(latency_s, 3), chars=len(frame.text), pub_seq=published.pub_seq)
        if self.view:
            self.view.final(published)
        return [("public", published), ("internal", published), ack]

    def sent(self, port: str, frame: frames.Frame) -> None:
        """Recorded once handed to ZeroMQ: a crash just before re-publishes (never loses) it."""
        if port == "public" and isinstance(frame, frames.Transcript) and not frame.is_partial:
            self._seen.add(frame.utt_id)

    def tick(self, now_ns: int) -> list[Output]:
        """The last number published, so a subscriber that missed the last finals learns it too."""
        if self._history is None or not self._history.last_seq:
            return []
        return [("public", frames.History(self._history.id, self._history.last_seq))]

    def _partial(self, frame: frames.Transcript) -> list[Output]:
        """Interim text on `transcript.partial`; never after the final, never acknowledged."""
        if frame.utt_id in self._seen:
            metrics.FRAMES_DROPPED.labels(self.name, "partial_after_final").inc()
            return []
        metrics.PARTIALS_PUBLISHED.labels(self.name).inc()
        if self.view:
            self.view.partial(frame)
        return [("public", dataclasses.replace(frame, t_published_wall_s=time.time()))]

    def close(self) -> None:
        if self._seen is not None:
            self._seen.close()
        if self._history is not None:
            self._history.close()


def make_stage(cfg: PipelineConfig, args) -> SinkStage:
    run_dir = cfg.resolved_run_dir()
    view = TranscriptView(args.print_view) if args.print_view else None
    return SinkStage(run_dir, topology.public_port(cfg, run_dir), view=view,
                     join_s=cfg.endpoints.subscriber_join_ms / 1000)


def _print_arg(parser) -> None:
    parser.add_argument("--print", dest="print_view", choices=("live", "json"),
                        help="also print transcripts on stdout: a live terminal view, or JSON lines")


def main() -> None:
    stage_main("sink", make_stage, _print_arg)


if __name__ == "__main__":
    main()
