"""RobustSTTManager: the original request's contract, usable by any LUXA code as a library.

    manager = RobustSTTManager({})            # {} = the shipped defaults (config.yaml's transcribe:)
    manager = RobustSTTManager(config["stt"], vad_manager=VADManager(config["vad"]))  # as originally written
    await manager.initialize()                # GPU if one is usable, else CPU; models loaded and warm
    result = await manager.transcribe_audio(wav_bytes, language="fr")
    manager.get_metrics(); await manager.cleanup()

Non-speech gets no text: with a `vad_manager` only its speech segments are transcribed (and
joined); without one, a Silero gate of its own skips clips with no speech (`use_vad: false` turns
both off); Whisper's no-speech and log-probability thresholds and the known-hallucination list
apply to what is transcribed.

Both pipeline workers run it too (synchronously, through the `*_now` methods). Bad audio raises an
`AudioInputError` (a ValueError) and counts as a client error: it never trips a breaker.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np

from pipeline import metrics
from pipeline.audio import AudioInputError, AudioSource, load_audio
from pipeline.config import LibraryConfig, PipelineConfig, TranscribeConfig
from pipeline.logs import get_logger
from pipeline.transcription import gpu
from pipeline.transcription.engine import MIN_AUDIO_S, Engine, NoModelError, Result, whisper_factory
from pipeline.transcription.vad_manager import SpeechSegment, VADManager

DeviceChoice = Literal["auto", "cuda", "cpu"]


class RobustSTTManager:
    """Fallback chain, circuit breakers, GPU choice and CPU fallback behind one small API."""

    def __init__(self, config: dict | TranscribeConfig | None = None, vad_manager: Any = None, *,
                 device: DeviceChoice = "auto", cpu_fallback: bool = True, cache_dir: Path | None = None,
                 model_factory: Callable = whisper_factory, gpu_probe: Callable = gpu.probe_gpus,
                 name: str = "stt") -> None:
        self.name = name  # the `stage` label of its metrics
        self.cfg = _library_config(config)
        self.vad_manager = vad_manager if self.cfg.use_vad else None
        self._gate: VADManager | None = None  # our own Silero gate, when use_vad and no vad_manager
        self.device_choice = device
        self.cpu_fallback = cpu_fallback
        configured = self.cfg.model_cache_dir and Path(self.cfg.model_cache_dir).expanduser()
        self.cache_dir = cache_dir or configured or PipelineConfig().models_cache_dir()
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
        if self.cfg.use_vad and self.vad_manager is None and self._gate is None:
            self._gate = VADManager()
        if self.device_choice == "cuda" or (self.device_choice == "auto" and self.cfg.gpu.enabled):
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
        result = self._answer(samples, language, partial)
        if not partial:
            self._stats["transcriptions"] += 1
            self._stats["latency_total_s"] += result.processing_time_s
        return self._as_dict(result)

    def _answer(self, samples: np.ndarray, language: str, partial: bool) -> Result:
        """Non-speech gates first (the VAD; the engine answers audio too short for a word), then the engine."""
        if samples.size < MIN_AUDIO_S * 16000:
            return self._nothing(samples, language, "too_short")  # without running the VAD either
        if hasattr(self.vad_manager, "process_audio"):
            return self._speech_only(samples, self.vad_manager.process_audio(samples), language, partial)
        if not self._has_speech(samples):
            return self._nothing(samples, language, "vad")
        return self._transcribe(samples, language, partial)

    def _has_speech(self, samples: np.ndarray) -> bool:
        gate = self.vad_manager or self._gate  # a caller's VAD with only `has_speech` is a gate too
        return gate is None or gate.has_speech(samples)

    def _nothing(self, samples: np.ndarray, language: str, reason: str) -> Result:
        return Result.nothing(language, self.engine.device, samples.size / 16000, reason)

    def _speech_only(self, samples: np.ndarray, pieces: list[SpeechSegment], language: str, partial: bool) -> Result:
        """Each speech segment transcribed on its own, then joined, times back on the clip's axis."""
        done = [(start_ms / 1000, self._transcribe(pcm, language, partial))
                for start_ms, _end_ms, pcm in pieces if pcm.size >= MIN_AUDIO_S * 16000]
        spoken = [(offset_s, r) for offset_s, r in done if r.non_speech_reason is None]
        if not spoken:
            nothing = self._nothing(samples, language, done[0][1].non_speech_reason if done else "vad")
            nothing.processing_time_s = sum(r.processing_time_s for _, r in done)
            return nothing
        last = spoken[-1][1]
        segments = [{**seg, "start_s": seg["start_s"] + offset_s, "end_s": seg["end_s"] + offset_s}
                    for offset_s, r in spoken for seg in r.segments]
        return Result(text=" ".join(r.text for _, r in spoken), segments=segments, language=language,
                      model_used=last.model_used, device=last.device, audio_duration_s=samples.size / 16000,
                      processing_time_s=sum(r.processing_time_s for _, r in done))

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
            "vad_enabled": (self.vad_manager or self._gate) is not None,
            "breakers": {f"{name}@{e.device}": state for e in engines for name, state in e.breaker_states().items()},
            "last_success_age_s": min((time.monotonic() - e.last_success for e in engines if e.last_success), default=None),
        }


def _library_config(config: dict | TranscribeConfig | None) -> LibraryConfig:
    if isinstance(config, LibraryConfig):
        return config
    if isinstance(config, TranscribeConfig):
        return LibraryConfig.of(config)
    return LibraryConfig.model_validate(config or {})
