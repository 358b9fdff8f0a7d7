"""RobustSTTManager: the original request's contract, usable by any LUXA code as a library.

    manager = RobustSTTManager({})            # {} = the shipped defaults (config.yaml's transcribe:)
    await manager.initialize()                # GPU if one is usable, else CPU; models loaded and warm
    result = await manager.transcribe_audio(wav_bytes, language="fr")
    manager.get_metrics(); await manager.cleanup()

Both pipeline workers run it too (synchronously, through the `*_now` methods). Bad audio raises an
`AudioInputError` (a ValueError) and counts as a client error: it never trips a breaker.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np

from pipeline import gpu, metrics
from pipeline.audio import AudioInputError, AudioSource, load_audio
from pipeline.config import PipelineConfig, TranscribeConfig
from pipeline.engine import Engine, NoModelError, Result, whisper_factory
from pipeline.logs import get_logger

MIN_AUDIO_S = 0.1  # shorter than any word: answered as non-speech without running the model

DeviceChoice = Literal["auto", "cuda", "cpu"]


class RobustSTTManager:
    """Fallback chain, circuit breakers, GPU choice and CPU fallback behind one small API."""

    def __init__(self, config: dict | TranscribeConfig | None = None, vad_manager: Any = None, *,
                 device: DeviceChoice = "auto", cpu_fallback: bool = True, cache_dir: Path | None = None,
                 model_factory: Callable = whisper_factory, gpu_probe: Callable = gpu.probe_gpus,
                 name: str = "stt") -> None:
        self.name = name  # the `stage` label of its metrics
        self.cfg = config if isinstance(config, TranscribeConfig) else TranscribeConfig.model_validate(config or {})
        self.vad_manager = vad_manager
        self.device_choice = device
        self.cpu_fallback = cpu_fallback
        self.cache_dir = cache_dir or PipelineConfig().models_cache_dir()
        self._factory, self._probe = model_factory, gpu_probe
        self.engine: Engine | None = None
        self._cpu_engine: Engine | None = None
        self._stats = {"transcriptions": 0, "errors": 0, "client_errors": 0, "latency_total_s": 0.0}
        self.log = get_logger()

    # -- lifecycle -------------------------------------------------------------------

    async def initialize(self) -> None:
        await asyncio.to_thread(self.initialize_now)

    def initialize_now(self) -> None:
        """Load and warm up: CUDA when asked or (auto) when a GPU is usable, else the CPU chain."""
        if self.device_choice in ("auto", "cuda"):
            try:
                self.engine = self._load(self.cfg.gpu)
                return
            except (gpu.GpuUnavailableError, NoModelError) as err:
                if self.device_choice == "cuda":
                    raise
                self.log.warning("gpu_not_used", reason=str(err))
        self.engine = self._load(self.cfg.cpu)

    def _load(self, worker_cfg) -> Engine:
        engine = Engine(worker_cfg, self.cfg, self.cache_dir, self._factory, self._probe)
        engine.load()
        engine.warm_up()
        return engine

    async def cleanup(self) -> None:
        for engine in (self.engine, self._cpu_engine):
            if engine is not None:
                engine.close()
        if self.engine is not None and self.engine.device == "cuda":
            gpu.release_cuda_cache()
        self.engine = self._cpu_engine = None

    # -- requests --------------------------------------------------------------------

    async def transcribe_audio(self, audio: AudioSource, language: str = "fr", sample_rate_hz: int | None = None) -> dict:
        return await asyncio.to_thread(self.transcribe_now, audio, language, sample_rate_hz)

    def transcribe_now(self, audio: AudioSource, language: str | None = None, sample_rate_hz: int | None = None,
                       partial: bool = False) -> dict:
        """Synchronous core of `transcribe_audio`; raises AudioInputError or NoModelError.

        `partial=True` asks for cheap interim text (greedy) for audio that is still being spoken.
        """
        if self.engine is None:
            raise RuntimeError("call initialize() first")
        language = language or self.cfg.language
        try:
            samples = load_audio(audio, self.cfg.max_audio_s, sample_rate_hz)
        except AudioInputError as err:
            self._stats["client_errors"] += 1
            metrics.BAD_INPUT.labels(self.name, err.reason).inc()
            self.log.warning("audio_rejected", reason=err.reason, error=str(err))
            raise
        if samples.size < MIN_AUDIO_S * 16000:
            # Found by fuzzing: Whisper on a few ms of audio loops to its length cap (seconds of work).
            return self._as_dict(Result("", [], language, "", self.engine.device, samples.size / 16000, 0.0, "too_short"))
        if self.vad_manager is not None and not self.vad_manager.has_speech(samples):
            return self._as_dict(Result("", [], language, "", self.engine.device, samples.size / 16000, 0.0, "vad"))
        result = self._transcribe(samples, language, partial)
        if not partial:
            self._stats["transcriptions"] += 1
            self._stats["latency_total_s"] += result.processing_time_s
        return self._as_dict(result)

    def _transcribe(self, samples: np.ndarray, language: str, partial: bool) -> Result:
        errors_before = self._engine_errors()
        try:
            return self.engine.transcribe(samples, language, partial)
        except NoModelError:
            if not (self.cpu_fallback and self.engine.device == "cuda"):
                raise
            self.log.error("gpu_chain_failed", action="cpu_fallback")
            if self._cpu_engine is None:
                self._cpu_engine = self._load(self.cfg.cpu)
            return self._cpu_engine.transcribe(samples, language, partial)
        finally:
            self._stats["errors"] += self._engine_errors() - errors_before

    def _engine_errors(self) -> int:
        return sum(e.failures for e in (self.engine, self._cpu_engine) if e is not None)

    @staticmethod
    def _as_dict(result: Result) -> dict:
        return {
            "text": result.text,
            "segments": [{"start": s["start_s"], "end": s["end_s"], "text": s["text"]} for s in result.segments],
            "language": result.language,
            "processing_time": result.processing_time_s,
            "device": result.device,
            "model_used": result.model_used,
            "is_speech": result.non_speech_reason is None,
            "non_speech_reason": result.non_speech_reason,
            "metrics": {"audio_duration": result.audio_duration_s, "rtf": result.rtf},
        }

    # -- introspection ---------------------------------------------------------------

    def get_metrics(self) -> dict:
        engines = [e for e in (self.engine, self._cpu_engine) if e is not None]
        done = self._stats["transcriptions"]
        return {
            "transcriptions": done,
            "errors": self._stats["errors"],
            "client_errors": self._stats["client_errors"],
            "avg_latency": self._stats["latency_total_s"] / done if done else 0.0,
            "device": self.engine.device if self.engine else None,
            "models_loaded": [f"{m.name}@{e.device}" for e in engines for m in e.models],
            "vad_enabled": self.vad_manager is not None,
            "breakers": {f"{name}@{e.device}": state for e in engines for name, state in e.breaker_states().items()},
            "last_success_age_s": min((time.monotonic() - e.last_success for e in engines if e.last_success), default=None),
        }
