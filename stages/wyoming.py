"""Wyoming stage: Home Assistant's speech-to-text protocol in front of the pipeline (`servers.wyoming`).

`python -m stages.wyoming`. The clients are served by an asyncio server in a thread of this process
(pipeline/wyoming_server.py); this side is the stage the runner drives. A client's turn leaves as an
Utterance on the VAD's `requests` port (the VAD spools and routes it like its own); the answer comes
back on the sink's private events socket (`transcript`, or only `ack` when it was not speech).
The two sides meet through a queue and a pipe the runner waits on (`Stage.wake_fd`).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import deque
from importlib import metadata
from pathlib import Path

from pipeline import frames, topology
from pipeline.cli import stage_main
from pipeline.config import PipelineConfig, VadConfig
from pipeline.config_exposure import WyomingConfig
from pipeline.exitcodes import ExitCode
from pipeline.logs import get_logger
from pipeline.runner import Output, Stage, StageStartError
from pipeline.silero import SileroVad
from pipeline.transport import PortSpec
from pipeline.wyoming_server import ID_PREFIX, WyomingDoor, asr_info

LISTEN_TIMEOUT_S = 10.0


def whisper_languages(first: str) -> list[str]:
    """Whisper's languages, the configured one first (`fr`)."""
    from faster_whisper.tokenizer import _LANGUAGE_CODES  # the list faster-whisper itself checks against

    return [first, *(code for code in _LANGUAGE_CODES if code != first)]


class WyomingStage(Stage):
    """Front door for Wyoming clients; owns the server thread and the hand-over to and from it."""

    name = "wyoming"
    is_source = True
    long_calls = False  # a hand-over per call: handled inline

    def __init__(self, cfg: WyomingConfig, vad: VadConfig, language: str, models: list[str], run_dir: Path) -> None:
        self.cfg, self.vad, self.language, self.models = cfg, vad, language, models
        self.inputs = {"events": PortSpec("sub", topology.events(run_dir), bind=False,
                                          subscribe=(b"transcript", b"ack"), kinds=("transcript", "ack"))}
        # Not blocking: with the VAD restarting, ZeroMQ queues the turn on this side of the pipe.
        self.outputs = {"requests": PortSpec("push", topology.requests(run_dir), bind=False, blocking=False)}
        self._ready: deque[frames.Frame] = deque()  # from the server thread; deque appends are thread-safe
        self.wake_fd, self._wake_w = os.pipe()
        os.set_blocking(self.wake_fd, False)
        os.set_blocking(self._wake_w, False)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._door = None
        self._thread: threading.Thread | None = None
        self._listening = threading.Event()
        self._stop: asyncio.Event | None = None
        self._listen_error: str | None = None
        self.log = get_logger()

    def preload(self) -> None:
        languages = whisper_languages(self.language)
        if all(m.endswith(".en") for m in self.models):
            languages = ["en"]
        info = asr_info(self.models, languages, _version())
        self._door = WyomingDoor(self.cfg, self._hand_over, info, self.language if self.language in languages else
                                 languages[0], set(languages), SileroVad, self.vad.threshold,
                                 self.vad.speculate_after_ms)
        SileroVad()  # fails here, before READY, if silero-vad is missing

    def start(self) -> None:
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), name="wyoming", daemon=True)
        self._thread.start()
        if not self._listening.wait(LISTEN_TIMEOUT_S) or self._listen_error:
            raise StageStartError(f"cannot listen on {self.cfg.uri}: {self._listen_error or 'timed out'}",
                                  ExitCode.TRANSIENT)

    async def _serve(self) -> None:
        from wyoming.server import AsyncServer, AsyncTcpServer

        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        server = AsyncServer.from_uri(self.cfg.uri)
        try:
            await server.start(self._door.handler)
        except OSError as err:
            self._listen_error = f"{type(err).__name__}: {err}"
            self._listening.set()
            return
        # The bound port (tcp://...:0 lets the system pick one): wyoming keeps the asyncio server private.
        port = server._server.sockets[0].getsockname()[1] if isinstance(server, AsyncTcpServer) else None
        self.log.info("wyoming_listening", uri=self.cfg.uri, port=port)
        self._listening.set()
        await self._stop.wait()
        await server.stop()

    def _hand_over(self, frame: frames.Frame) -> None:
        """Server thread -> runner: queue the frame and wake the runner's poll."""
        self._ready.append(frame)
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups already: the runner is about to drain the queue

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
        """The sink's final or ack for some utterance: to the server thread, which knows if it is ours."""
        if isinstance(frame, (frames.Transcript, frames.Ack)) and frame.utt_id.startswith(ID_PREFIX) and self._loop:
            self._loop.call_soon_threadsafe(self._door.answered, frame)
        return []

    def close(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=2)
        for fd in (self.wake_fd, self._wake_w):
            os.close(fd)


def _version() -> str:
    try:
        return metadata.version("luxa-speech")
    except metadata.PackageNotFoundError:
        return "0"


def make_stage(cfg: PipelineConfig, args) -> WyomingStage:
    if cfg.servers.wyoming is None:
        raise SystemExit("servers.wyoming is not set: the Wyoming stage has nothing to serve")
    chains = [topology.worker_config(cfg, w).models for w in topology.enabled_workers(cfg)]
    models = list(dict.fromkeys(m for chain in chains for m in chain))
    return WyomingStage(cfg.servers.wyoming, cfg.vad, cfg.transcribe.language, models, cfg.resolved_run_dir())


def main() -> None:
    stage_main("wyoming", make_stage)


if __name__ == "__main__":
    main()
