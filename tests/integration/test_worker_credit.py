"""A real worker process on its one DEALER socket, a stand-in dispatcher on the ROUTER end: its
credit says when it is free, and a final sent on top of a partial cuts the partial short."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from pipeline import frames, topology
from pipeline.audio import load_audio
from pipeline.harness.lone_stage import LoneStage
from pipeline.harness.waiting import wait_until
from pipeline.testmode import TEST_RECORDING, keyword_hits
from pipeline.transport import Poller, PortSpec, recv_parts, send

pytestmark = pytest.mark.slow
CONF_FULL = Path(__file__).resolve().parents[1] / "data" / "audio" / "fr-conf-full.wav"


def utterance(utt_id: str, audio: np.ndarray, **fields) -> frames.Utterance:
    return frames.Utterance(utt_id, 0.0, audio.size / 16000, time.time(), 16000, audio.astype(np.float32).tobytes(),
                            **fields)


class Dispatcher:
    """The ROUTER end of the pool socket: what the worker sent, in order, and sending it jobs."""

    def __init__(self, worker: LoneStage) -> None:
        self.sock = worker.peer(PortSpec("router", topology.pool(worker.run_dir), bind=True))
        self.received: list[frames.Frame] = []
        self.peer = b""

    def take(self) -> bool:
        for sock in Poller([self.sock]).readable(0.1):
            self.peer, *parts = recv_parts(sock)
            self.received.append(frames.decode(parts))
        return True

    def credits(self) -> list[frames.WorkerReady]:
        return [f for f in self.received if isinstance(f, frames.WorkerReady)]

    def send(self, frame: frames.Frame) -> None:
        assert send(self.sock, frame, "test", 1000, to=self.peer)


def test_the_credit_counts_jobs_and_a_final_on_top_of_a_partial_cuts_the_partial_short(run_dir):
    worker = LoneStage(run_dir, "transcribe", "--worker", "transcribe_cpu")
    try:
        dispatcher = Dispatcher(worker)
        wait_until(lambda: dispatcher.take() and dispatcher.credits(), 30, what="the worker's first credit")
        first = dispatcher.credits()[-1]
        assert (first.worker, first.pool, first.done, first.idle) == ("transcribe_cpu", "transcribe_cpu", 0, True)
        long_speech = np.tile(load_audio(TEST_RECORDING, 60), 2)[: 25 * 16000]  # a long partial to decode
        dispatcher.send(utterance("u1", long_speech, is_partial=True))
        dispatcher.send(utterance("u2", load_audio(CONF_FULL, 60)))  # what the dispatcher does when none is free
        wait_until(lambda: dispatcher.take() and any(c.done == 2 and c.idle for c in dispatcher.credits()), 120,
                   what="both jobs finished")
        [final] = [f for f in dispatcher.received if isinstance(f, frames.Transcript) and not f.is_partial]
        assert final.utt_id == "u2" and keyword_hits(["cette", "conférence", "est", "pleine"], final.text) >= 3
        assert worker.log_count("partial_preempted", utt_id="u1") == 1  # cut short: nothing sent for it
        assert not [f for f in dispatcher.received if isinstance(f, frames.Transcript) and f.is_partial]
        done = [c.done for c in dispatcher.credits()]
        assert done == sorted(done) and done[-1] == 2  # one count per job, after its answers
    finally:
        worker.close()
