"""OpenAI API stage: `POST /v1/audio/transcriptions` and `GET /v1/models` in front of the pipeline
(`servers.openai`), for OpenAI-compatible clients (the `openai` package, Open WebUI, scripts).

`python -m stages.openai_api`. Requests are served by a threading HTTP server in this process
(pipeline/openai_server.py); the hand-over to the VAD's `requests` port and back from the sink's
events is every front door's (pipeline/front_door.py).
"""

from __future__ import annotations

import threading
from pathlib import Path

from pipeline import topology
from pipeline.cli import stage_main
from pipeline.config import PipelineConfig
from pipeline.config_exposure import OpenAIConfig
from pipeline.exitcodes import ExitCode
from pipeline.front_door import FrontDoorStage, model_languages
from pipeline.openai_server import OpenAIApi
from pipeline.runner import StageStartError


class OpenAIStage(FrontDoorStage):
    """Front door for HTTP clients: owns the HTTP server and its thread."""

    name = "openai"
    id_prefix = "oa"

    def __init__(self, cfg: OpenAIConfig, language: str, models: list[str], run_dir: Path) -> None:
        super().__init__(run_dir)
        self.cfg, self.language, self.models = cfg, language, models
        self._server = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        languages = model_languages(self.models, self.language)
        try:
            self._server = OpenAIApi(self.cfg, self, self.models, languages).server()
        except OSError as err:
            raise StageStartError(f"cannot listen on {self.cfg.url}: {type(err).__name__}: {err}",
                                  ExitCode.TRANSIENT) from None
        self._thread = threading.Thread(target=self._server.serve_forever, name="openai", daemon=True)
        self._thread.start()
        self.log.info("openai_listening", url=self.cfg.url, port=self._server.server_address[1])

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        super().close()


def make_stage(cfg: PipelineConfig, args) -> OpenAIStage:
    if cfg.servers.openai is None:
        raise SystemExit("servers.openai is not set: the OpenAI API stage has nothing to serve")
    return OpenAIStage(cfg.servers.openai, cfg.transcribe.language, topology.chain_models(cfg), cfg.resolved_run_dir())


def main() -> None:
    stage_main("openai", make_stage)


if __name__ == "__main__":
    main()
