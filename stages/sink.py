"""Sink stage: publishes each transcript once on topic `transcript`, acknowledges every result.

Duplicates (an utterance re-sent after a failover) are dropped here but acknowledged again,
in case the first acknowledgement was missed. With `--print`, transcripts also go to stdout as
one JSON object per line (stdout carries transcripts only; logs go to stderr).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections import OrderedDict
from pathlib import Path

from pipeline import frames, metrics, topology
from pipeline.cli import stage_main
from pipeline.config import PipelineConfig
from pipeline.logs import get_logger
from pipeline.runner import Output, Stage
from pipeline.transport import PortSpec

SEEN_LIMIT = 100_000  # utterance ids remembered for de-duplication (~4 MB)


def transcript_json(t: frames.Transcript) -> str:
    """The documented stdout form: the Transcript fields as one JSON object."""
    return json.dumps(dataclasses.asdict(t), ensure_ascii=False)


class SinkStage(Stage):
    name = "sink"

    def __init__(self, run_dir: Path, public_endpoint: str, print_stdout: bool = False) -> None:
        self.inputs = {"results": PortSpec("pull", topology.results(run_dir), bind=True)}
        self.outputs = {"public": PortSpec("pub", public_endpoint, bind=True, blocking=False)}
        self.print_stdout = print_stdout
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.log = get_logger()

    def handle(self, port: str, frame: frames.Frame) -> list[Output]:
        if not isinstance(frame, frames.Transcript):
            return []
        if frame.is_partial:
            return self._partial(frame)
        ack = ("public", frames.Ack(frame.utt_id))
        if frame.utt_id in self._seen:
            metrics.DUPLICATES.labels(self.name).inc()
            self.log.info("duplicate_dropped", utt_id=frame.utt_id, worker=frame.worker)
            return [ack]
        self._remember(frame.utt_id)
        if not frame.is_speech:
            metrics.NON_SPEECH.labels(self.name).inc()
            self.log.info("non_speech_dropped", utt_id=frame.utt_id)
            return [ack]
        published = dataclasses.replace(frame, t_published_wall_s=time.time())
        latency_s = published.t_published_wall_s - published.t_closed_wall_s
        metrics.PUBLISHED.labels(self.name).inc()
        metrics.E2E_LATENCY.labels(self.name).observe(max(0.0, latency_s))
        self.log.info("transcript_published", utt_id=frame.utt_id, worker=frame.worker, model=frame.model_used,
                      close_to_publish_s=round(latency_s, 3), chars=len(frame.text))
        if self.print_stdout:
            print(transcript_json(published), flush=True)
        return [("public", published), ack]

    def _partial(self, frame: frames.Transcript) -> list[Output]:
        """Interim text on `transcript.partial`; never after the final, never acknowledged."""
        if frame.utt_id in self._seen:
            metrics.FRAMES_DROPPED.labels(self.name, "partial_after_final").inc()
            return []
        metrics.PARTIALS_PUBLISHED.labels(self.name).inc()
        return [("public", dataclasses.replace(frame, t_published_wall_s=time.time()))]

    def _remember(self, utt_id: str) -> None:
        self._seen[utt_id] = None
        if len(self._seen) > SEEN_LIMIT:
            self._seen.popitem(last=False)


def make_stage(cfg: PipelineConfig, args) -> SinkStage:
    run_dir = cfg.resolved_run_dir()
    return SinkStage(run_dir, topology.transcripts(cfg, run_dir), print_stdout=args.print_stdout)


def _print_arg(parser) -> None:
    parser.add_argument("--print", dest="print_stdout", action="store_true", help="also print transcripts on stdout")


def main() -> None:
    stage_main("sink", make_stage, _print_arg)


if __name__ == "__main__":
    main()
