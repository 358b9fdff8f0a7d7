"""What every front door (Wyoming, the OpenAI API) shares: a stage whose clients are served by a
server thread, their turns handed to the VAD's `requests` port, their answers handed back.

The server thread calls `send` (queue + a byte on a pipe the runner waits on, `Stage.wake_fd`) and
`wait` (blocks that thread until the sink's final or ack for the turn comes, sending the turn again
while none does: a turn can be lost with a VAD that died holding it unspooled). The runner calls
`produce` (what the thread queued) and `handle` (the sink's events, and the supervisor's routes:
no route for a while means no worker can answer).
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections import deque
from concurrent.futures import Future, TimeoutError as FutureTimeout
from pathlib import Path

from pipeline import frames, topology
from pipeline.logs import get_logger
from pipeline.runner import CONTROL, Output, Stage
from pipeline.transport import PortSpec

RESEND_AFTER_S = 10.0    # a turn not answered by then goes to the VAD again
ANSWER_TIMEOUT_S = 120.0  # then the client gets an error (the supervisor's max_busy_s)
ROUTE_STALE_S = 3.5      # the supervisor re-sends the route every second while a worker is routed


def model_languages(models: list[str], first: str) -> list[str]:
    """What the chain can transcribe, the configured language first (`fr`): English alone for
    English-only models (`tiny.en`), else Whisper's languages."""
    if all(m.endswith(".en") for m in models):
        return ["en"]
    from faster_whisper.tokenizer import _LANGUAGE_CODES  # the list faster-whisper itself checks against

    return [first, *(code for code in _LANGUAGE_CODES if code != first)]


class NoAnswer(Exception):
    """No transcript within ANSWER_TIMEOUT_S."""


class FrontDoorStage(Stage):
    """A source stage fed by a server thread; subclasses start the server in `start` and stop it in `close`."""

    is_source = True
    long_calls = False  # a hand-over per call: handled inline
    id_prefix = "door"  # the VAD's own ids are hex: a front door's start with a letter that is not

    def __init__(self, run_dir: Path) -> None:
        self.inputs = {"events": PortSpec("sub", topology.events(run_dir), bind=False,
                                          subscribe=(b"transcript", b"ack"), kinds=("transcript", "ack"))}
        # Not blocking: with the VAD restarting, ZeroMQ queues the turn on this side of the pipe.
        self.outputs = {"requests": PortSpec("push", topology.requests(run_dir), bind=False, blocking=False)}
        self._ready: deque[frames.Frame] = deque()  # from the server thread; deque appends are thread-safe
        self.wake_fd, self._wake_w = os.pipe()
        os.set_blocking(self.wake_fd, False)
        os.set_blocking(self._wake_w, False)
        self._waiting: dict[str, Future] = {}
        self._lock = threading.Lock()
        self._session, self._count = secrets.token_hex(4), 0  # random: ids outlive this process in the sink's log
        self._routed_at = 0.0
        self.log = get_logger()

    # -- the server thread's side ---------------------------------------------------

    def mint_id(self) -> str:
        with self._lock:
            self._count += 1
            return f"{self.id_prefix}{self._session}-{self._count:06d}"

    def send(self, frame: frames.Frame) -> None:
        """Queue a frame for the VAD and wake the runner's poll."""
        self._ready.append(frame)
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups already: the runner is about to drain the queue

    def worker_routed(self) -> bool:
        """Whether the supervisor routes to a worker now (else a turn would only wait)."""
        return time.monotonic() - self._routed_at < ROUTE_STALE_S

    def wait(self, final: frames.Utterance) -> frames.Transcript | None:
        """Send a final turn and block until its transcript (None: not speech); NoAnswer at the timeout."""
        future: Future = Future()
        with self._lock:
            self._waiting[final.utt_id] = future
        try:
            deadline = time.monotonic() + ANSWER_TIMEOUT_S
            self.send(final)
            while True:
                try:
                    return future.result(timeout=max(0.0, min(RESEND_AFTER_S, deadline - time.monotonic())))
                except FutureTimeout:
                    if time.monotonic() >= deadline:
                        raise NoAnswer(f"no transcript within {ANSWER_TIMEOUT_S:g} s") from None
                    self.log.info("front_door_turn_sent_again", utt_id=final.utt_id)
                    self.send(final)
        finally:
            with self._lock:
                self._waiting.pop(final.utt_id, None)

    # -- the runner's side --------------------------------------------------------------

    def produce(self, max_wait_s: float) -> list[Output]:
        try:
            while os.read(self.wake_fd, 4096):
                pass
        except BlockingIOError:
            pass
        out = []
        while self._ready:
            out.append(("requests", self._ready.popleft()))
        return out

    def handle(self, port: str, frame: frames.Frame) -> list[Output]:
        """The sink's final or ack for some utterance (ours, if a turn waits for it); the supervisor's route."""
        if port == CONTROL and isinstance(frame, frames.Route):
            self._routed_at = time.monotonic()
        elif isinstance(frame, (frames.Transcript, frames.Ack)) and frame.utt_id.startswith(self.id_prefix):
            with self._lock:
                future = self._waiting.get(frame.utt_id)
            if future is not None and not future.done():
                # A speech final comes before its ack on the same socket; an ack alone means not speech.
                future.set_result(frame if isinstance(frame, frames.Transcript) else None)
        return []

    def close(self) -> None:
        for fd in (self.wake_fd, self._wake_w):
            os.close(fd)
