"""One stage object driven in-process: frames in, `(port, frame)` out (pipecat's `run_test`).

No sockets, threads or processes: the driver calls the stage's hooks directly, in the order the
runner would, so a test injects the clock and asserts the exact frames, in milliseconds. Every
frame goes through the wire codec first, so what a test feeds could really have come off a
socket. One subprocess test per stage still checks its command line.
"""

from __future__ import annotations

from collections.abc import Iterable

from pipeline import frames
from pipeline.frames import Frame
from pipeline.runner import Output, Stage


class StageDriver:
    """Feeds one stage; `outputs` keeps everything it emitted, in order."""

    def __init__(self, stage: Stage, start: bool = True) -> None:
        self.stage = stage
        self.outputs: list[Output] = []
        if start:
            stage.preload()
            stage.start()

    def send(self, port: str, frame: Frame) -> list[Output]:
        """`handle(port, frame)`, as the runner calls it for a message read on `port`."""
        return self._emitted(self.stage.handle(port, frames.decode(frames.encode(frame, "driver"))))

    def tick(self, now_ns: int) -> list[Output]:
        """The heartbeat-interval timer (resends, probes)."""
        return self._emitted(self.stage.tick(now_ns))

    def drain(self) -> list[Output]:
        """SIGTERM or a Stop frame: what the stage sends while it drains."""
        return self._emitted(self.stage.begin_drain())

    def _emitted(self, outputs: list[Output]) -> list[Output]:
        for port, frame in outputs:
            self.stage.sent(port, frame)  # the runner's acknowledgement that ZeroMQ took it
        self.outputs += outputs
        return outputs

    def close(self) -> None:
        self.stage.close()


def run_stage(stage: Stage, frames_in: Iterable[tuple[str, Frame]]) -> list[Output]:
    """Start the stage, feed every `(port, frame)`, drain, close; everything it emitted."""
    driver = StageDriver(stage)
    try:
        for port, frame in frames_in:
            driver.send(port, frame)
        driver.drain()
    finally:
        driver.close()
    return driver.outputs


def of_kind(outputs: Iterable[Output], cls: type, port: str | None = None) -> list:
    """The emitted frames of one type (on one port)."""
    return [f for p, f in outputs if isinstance(f, cls) and (port is None or p == port)]
