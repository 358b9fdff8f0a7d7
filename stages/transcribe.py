"""Transcription worker: one module for both workers; the device comes from config.

`python -m stages.transcribe --worker transcribe_gpu|transcribe_cpu`. The GPU worker exits 3
when no usable GPU is present, so the supervisor fails over to the CPU-model worker. When every
model of the chain fails on a request, the worker exits instead of dropping the utterance:
the VAD still holds it and sends it again to whichever worker is routed next.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from pipeline import frames, metrics, topology
from pipeline.audio import AudioInputError, load_audio
from pipeline.cli import stage_main
from pipeline.config import PipelineConfig, TranscribeConfig, WorkerConfig
from pipeline.engine import Engine, NoModelError
from pipeline.exitcodes import ExitCode
from pipeline.gpu import GpuUnavailableError
from pipeline.logs import get_logger
from pipeline.runner import Output, Stage, StageStartError
from pipeline.transport import PortSpec


class TranscribeStage(Stage):
    def __init__(self, worker: str, worker_cfg: WorkerConfig, cfg: TranscribeConfig, cache_dir: Path,
                 run_dir: Path, engine: Engine | None = None) -> None:
        self.name = worker
        self.cfg = cfg
        self.inputs = {"utterances": PortSpec("pull", topology.utterances(run_dir, worker), bind=False)}
        self.outputs = {"results": PortSpec("push", topology.results(run_dir), bind=False)}
        self.engine = engine or Engine(worker_cfg, cfg, cache_dir)
        self.log = get_logger()

    def start(self) -> None:
        try:
            self.engine.load()
        except GpuUnavailableError as err:
            raise StageStartError(str(err), ExitCode.GPU_UNAVAILABLE) from None
        except NoModelError as err:
            code = ExitCode.GPU_UNAVAILABLE if self.engine.device == "cuda" else ExitCode.TRANSIENT
            raise StageStartError(str(err), code) from None
        started = time.perf_counter()
        self.engine.warm_up()
        metrics.MODELS_LOADED.labels(self.name).set(len(self.engine.models))
        self.log.info("worker_warm", models=[m.name for m in self.engine.models],
                      warmup_s=round(time.perf_counter() - started, 3))

    def handle(self, port: str, frame: frames.Frame) -> list[Output]:
        if not isinstance(frame, frames.Utterance):
            return []
        log = self.log.bind(utt_id=frame.utt_id)
        try:
            audio = load_audio(_pcm_array(frame.pcm), self.cfg.max_audio_s, frame.sample_rate_hz)
            result = self.engine.transcribe(audio)
        except AudioInputError as err:
            metrics.BAD_INPUT.labels(self.name, err.reason).inc()
            log.warning("utterance_rejected", reason=err.reason, error=str(err))
            return [("results", _empty(frame, self.name, self.engine.device, err.reason))]
        except NoModelError as err:
            log.error("worker_failed", error=str(err))
            code = ExitCode.GPU_UNAVAILABLE if self.engine.device == "cuda" else ExitCode.TRANSIENT
            raise SystemExit(code) from None
        log.info("utterance_transcribed", model=result.model_used, audio_s=round(result.audio_duration_s, 3),
                 inference_s=round(result.processing_time_s, 3), rtf=round(result.rtf, 3),
                 queue_s=round(max(0.0, time.time() - frame.t_closed_wall_s - result.processing_time_s), 3),
                 non_speech=result.non_speech_reason)
        return [("results", frames.Transcript(
            frame.utt_id, result.text, result.language, result.segments, result.model_used, result.device,
            self.name, result.audio_duration_s, result.processing_time_s, result.rtf,
            result.non_speech_reason is None, frame.t_closed_wall_s))]

    def close(self) -> None:
        self.engine.close()


def _pcm_array(pcm: bytes) -> np.ndarray:
    if len(pcm) % 4:
        raise AudioInputError(f"PCM buffer of {len(pcm)} bytes is not whole float32 samples")
    return np.frombuffer(pcm, dtype=np.float32)


def _empty(utt: frames.Utterance, worker: str, device: str, reason: str) -> frames.Transcript:
    """Acknowledges an utterance that cannot be transcribed, so it is not sent again forever."""
    return frames.Transcript(utt.utt_id, "", "", [], "", device, worker, 0.0, 0.0, 0.0, False, utt.t_closed_wall_s)


def make_stage(cfg: PipelineConfig, args) -> TranscribeStage:
    worker = args.stage_name
    return TranscribeStage(worker, topology.worker_config(cfg, worker), cfg.transcribe,
                           cfg.models_cache_dir(), cfg.resolved_run_dir())


def _worker_arg(parser) -> None:
    parser.add_argument("--worker", dest="stage_name", choices=topology.WORKERS, default="transcribe_cpu")


def main() -> None:
    stage_main("transcribe", make_stage, _worker_arg)


if __name__ == "__main__":
    sys.exit(main())
