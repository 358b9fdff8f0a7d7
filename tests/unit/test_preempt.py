"""A call for a less urgent input learns, through Stage.preempt, that a more urgent one is waiting."""

from __future__ import annotations

import threading

from pipeline.harness.waiting import wait_until
from pipeline.runner import Stage, StageRunner
from pipeline.transport import Poller, PortSpec, Transport, ipc_endpoint, send_raw


class SlowPartialStage(Stage):
    """Its call runs until preempted (or 10 s): what a partial decode does once the engine is told."""

    def __init__(self) -> None:
        self.stop = threading.Event()

    def preempt(self) -> None:
        self.stop.set()

    def slow_call(self) -> str:
        return "preempted" if self.stop.wait(10) else "ran to the end"


def test_a_message_on_a_more_urgent_socket_preempts_the_running_call_and_stays_queued(tmp_path):
    transport = Transport()
    urgent = transport.open(PortSpec("pull", ipc_endpoint(tmp_path, "urgent"), bind=True))
    sender = transport.open(PortSpec("push", ipc_endpoint(tmp_path, "urgent"), bind=False))
    try:
        send_raw(sender, [b"utterance", b"a final waiting behind a partial"])
        wait_until(lambda: Poller([urgent]).readable(0), 5, what="the message to arrive")
        stage = SlowPartialStage()
        assert StageRunner(stage, heartbeat_interval_s=0.5)._call(stage.slow_call, preempt_on=[urgent]) == "preempted"
        assert Poller([urgent]).readable(0)  # only looked at: the loop takes it next, by priority
    finally:
        transport.close()
