"""A source fed by its own thread (Stage.wake_fd): produce runs when the pipe says so, and an input
frame is never held behind it."""

from __future__ import annotations

import os
import time

from pipeline import frames
from pipeline.runner import Stage, StageRunner, StageState
from pipeline.transport import PortSpec, Transport, ipc_endpoint, send


class ThreadFedSource(Stage):
    is_source = True
    long_calls = False

    def __init__(self, run_dir) -> None:
        self.inputs = {"events": PortSpec("pull", ipc_endpoint(run_dir, "events"), bind=True, kinds=("ack",))}
        self.outputs = {}
        self.wake_fd, self.wake_w = os.pipe()
        os.set_blocking(self.wake_fd, False)
        self.produced, self.handled = 0, []

    def produce(self, max_wait_s: float) -> list:
        assert max_wait_s == 0.0  # never left to wait: the runner's poll did the waiting
        os.read(self.wake_fd, 64)
        self.produced += 1
        return []

    def handle(self, port, frame) -> list:
        self.handled.append(frame.utt_id)
        return []


def test_produce_waits_for_the_pipe_and_inputs_are_served_meanwhile(tmp_path):
    transport = Transport()
    stage = ThreadFedSource(tmp_path)
    runner = StageRunner(stage)
    runner._open_control(transport, tmp_path)
    runner._open_ports(transport)
    runner.state = StageState.RUNNING
    sender = transport.open(PortSpec("push", ipc_endpoint(tmp_path, "events"), bind=False))
    try:
        started = time.monotonic()
        runner._receive_or_produce(0.2)
        assert stage.produced == 0 and time.monotonic() - started >= 0.15  # nothing ready: it waited in poll
        send(sender, frames.Ack("u1"), "test", 1000)
        runner._receive_or_produce(5.0)
        assert stage.handled == ["u1"] and stage.produced == 0  # the frame at once, no produce call
        os.write(stage.wake_w, b"\0")
        runner._receive_or_produce(5.0)
        assert stage.produced == 1
        runner.state = StageState.DRAINING
        os.write(stage.wake_w, b"\0")
        runner._receive_or_produce(0.2)
        assert stage.produced == 1  # draining: the pipe is no longer watched (no busy loop on it)
    finally:
        transport.close()
