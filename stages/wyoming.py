"""Wyoming stage: Home Assistant's speech-to-text protocol in front of the pipeline (`servers.wyoming`).

`python -m stages.wyoming`. The clients are served by an asyncio server in a thread of this process
(pipeline/wyoming_server.py); the hand-over to the VAD's `requests` port and back from the sink's
events is every front door's (pipeline/front_door.py).
"""

from __future__ import annotations

import asyncio
import threading
from importlib import metadata
from pathlib import Path

from pipeline import topology
from pipeline.cli import stage_main
from pipeline.config import PipelineConfig, VadConfig
from pipeline.config_exposure import WyomingConfig
from pipeline.exitcodes import ExitCode
from pipeline.front_door import FrontDoorStage, model_languages
from pipeline.runner import StageStartError
from pipeline.silero import SileroVad
from pipeline.wyoming_server import WyomingDoor, asr_info

LISTEN_TIMEOUT_S = 10.0


class WyomingStage(FrontDoorStage):
    """Front door for Wyoming clients: owns the asyncio server thread (pipeline/wyoming_server.py)."""

    name = "wyoming"
    id_prefix = "wy"

    def __init__(self, cfg: WyomingConfig, vad: VadConfig, language: str, models: list[str], run_dir: Path) -> None:
        super().__init__(run_dir)
        self.cfg, self.vad, self.language, self.models = cfg, vad, language, models
        self._loop: asyncio.AbstractEventLoop | None = None
        self._door: WyomingDoor | None = None
        self._thread: threading.Thread | None = None
        self._listening = threading.Event()
        self._stop: asyncio.Event | None = None
        self._listen_error: str | None = None

    def preload(self) -> None:
        languages = model_languages(self.models, self.language)
        info = asr_info(self.models, languages, _version())
        self._door = WyomingDoor(self.cfg, self, info, languages[0], set(languages), SileroVad, self.vad.threshold,
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

    def close(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=2)
        super().close()


def _version() -> str:
    try:
        return metadata.version("luxa-speech")
    except metadata.PackageNotFoundError:
        return "0"


def make_stage(cfg: PipelineConfig, args) -> WyomingStage:
    if cfg.servers.wyoming is None:
        raise SystemExit("servers.wyoming is not set: the Wyoming stage has nothing to serve")
    return WyomingStage(cfg.servers.wyoming, cfg.vad, cfg.transcribe.language, topology.chain_models(cfg),
                        cfg.resolved_run_dir())


def main() -> None:
    stage_main("wyoming", make_stage)


if __name__ == "__main__":
    main()
