"""The transcription engine both workers run: a model fallback chain with circuit breakers.

One engine per worker process; the device is a config value (wyoming-faster-whisper's single
Transcriber with `device=`). A model that fails to load is skipped; a model that raises during
a request is skipped for that request and the next one in the chain answers.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pipeline import metrics
from pipeline.audio import TARGET_RATE_HZ
from pipeline.config import TranscribeConfig, WorkerConfig
from pipeline.logs import get_logger
from pipeline.transcription import gpu
from pipeline.transcription.breaker import CircuitBreaker
from pipeline.transcription.fastpath import FastDecoder
from pipeline.transcription.hallucination import SegmentSignal, non_speech_reason, speech_segments
from pipeline.transcription.models import resolve_model

WARMUP_S = 1.0
MIN_AUDIO_S = 0.1  # shorter than any word: answered as non-speech without running the model
PARTIAL_OPTIONS = {"beam_size": 1, "temperature": 0.0, "without_timestamps": True}


class NoModelError(RuntimeError):
    """No model of the chain could be loaded, or every one failed on this request."""


@dataclass
class Result:
    """One answer of the engine; `segments` are `{"start_s", "end_s", "text"}` relative to the audio."""
    text: str
    segments: list[dict]
    language: str
    model_used: str
    device: str
    audio_duration_s: float
    processing_time_s: float
    non_speech_reason: str | None = None
    end_logprob: float = 0.0  # average log-probability of the last segment: how sure the decoder was of the end
    end_probability: float = -1.0  # P(its closing punctuation), when asked and the fast path wrote one; -1 = not scored

    @classmethod
    def nothing(cls, language: str, device: str, audio_duration_s: float, reason: str) -> Result:
        """No text, and why (a gate answered without the model)."""
        return cls(text="", segments=[], language=language, model_used="", device=device,
                   audio_duration_s=audio_duration_s, processing_time_s=0.0, non_speech_reason=reason)

    @property
    def is_speech(self) -> bool:
        return self.non_speech_reason is None

    @property
    def rtf(self) -> float:
        return self.processing_time_s / self.audio_duration_s if self.audio_duration_s else 0.0


@dataclass
class LoadedModel:
    """A model of the chain with its breaker (and its fast decoder, for real Whisper models)."""
    name: str
    model: Any
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    fast: FastDecoder | None = None  # short-window decoding, for real faster-whisper models


def whisper_factory(path: str, device: str, device_index: int, compute_type: str, cpu_threads: int):
    from faster_whisper import WhisperModel  # imported here: stages without a model never pay for it

    return WhisperModel(path, device=device, device_index=device_index, compute_type=compute_type,
                        cpu_threads=cpu_threads, num_workers=1)


class Engine:
    """Loads the worker's model chain and answers transcription requests."""

    def __init__(self, worker: WorkerConfig, transcribe: TranscribeConfig, cache_dir: Path,
                 model_factory: Callable = whisper_factory, gpu_probe: Callable = gpu.probe_gpus,
                 clock: Callable[[], float] = time.monotonic, fault: Callable[[], None] | None = None) -> None:
        self.worker = worker
        self.cfg = transcribe
        self.cache_dir = cache_dir
        self.device = worker.device
        self.device_index = 0
        self.compute_type = worker.compute_type or ("float16" if worker.device == "cuda" else "int8")
        self._factory = model_factory
        self._probe = gpu_probe
        self._clock = clock
        self.models: list[LoadedModel] = []
        self.failures = 0          # engine errors, all models (client errors never count)
        self.last_success = 0.0    # monotonic time of the last answered request (0 = none yet)
        self._partial_preempted = threading.Event()
        self._fault = fault  # tests only (pipeline/transcription/faults.py): called before a final's model call
        self.log = get_logger(device=self.device)

    def load(self) -> None:
        """Pick the GPU (cuda), then load every model of the chain that loads. Raises if none does."""
        if self.device == "cuda":
            chosen = gpu.select_gpu(self.worker.min_free_vram_mb << 20, self._probe)
            self.device_index = chosen.index
            self.log.info("gpu_selected", index=chosen.index, name=chosen.name, free_mib=chosen.free_bytes >> 20)
        for name in self.worker.models:
            try:
                self._check_vram()
                path = resolve_model(name, self.cache_dir)
                model = self._factory(path, self.device, self.device_index, self.compute_type, self.worker.cpu_threads)
            except Exception as err:  # any load failure skips this model; the next one may load
                if self.device == "cuda" and gpu.is_cuda_error(err):
                    gpu.release_cuda_cache()
                metrics.ERRORS.labels(name, self.device, "load").inc()
                self.log.error("model_load_failed", model=name, error=f"{type(err).__name__}: {err}")
                continue
            fast = FastDecoder(model) if hasattr(model, "feature_extractor") else None
            self.models.append(LoadedModel(name, model, CircuitBreaker(clock=self._clock), fast))
            self.log.info("model_loaded", model=name, compute_type=self.compute_type)
        if not self.models:
            raise NoModelError(f"no model of the chain {self.worker.models} could be loaded on {self.device}")
        self._update_gauges()

    def _check_vram(self) -> None:
        """Before each model: the chosen GPU must still have the configured free memory."""
        if self.device != "cuda":
            return
        info = next((g for g in self._probe() if g.index == self.device_index), None)
        if info is not None and info.free_bytes < self.worker.min_free_vram_mb << 20:
            raise gpu.GpuUnavailableError(f"GPU {info.index}: {info.free_bytes >> 20} MiB free, "
                                          f"below {self.worker.min_free_vram_mb} MiB")

    def warm_up(self) -> None:
        """One synthetic request per model so the first real utterance is not slow.

        A model that cannot even do that is dropped from the chain, like one that fails to load.
        """
        for loaded in list(self.models):
            try:
                self._synthetic(loaded)
            except Exception as err:  # same policy as a load failure
                metrics.ERRORS.labels(loaded.name, self.device, "warmup").inc()
                self.log.error("model_warmup_failed", model=loaded.name, error=f"{type(err).__name__}: {err}")
                self.models.remove(loaded)
        if not self.models:
            raise NoModelError(f"no model of the chain {self.worker.models} survived its warm-up on {self.device}")
        self._mark_success()

    def probe(self) -> bool:
        """Health check: one synthetic request on the first allowed model; not counted as traffic.

        Through the short-window decoder when the model has one: 1 s of silence in a 4 s window,
        greedy, ~0.13 core-s on two cores, where the full 30 s window costs ~1 core-s (an idle
        worker probing every 30 s that way was a third of what listening to silence cost).
        """
        for loaded in self.models:
            if loaded.breaker.allow():
                try:
                    self._probe_once(loaded)
                except Exception as err:  # a failing probe is an engine failure like any other
                    self._on_failure(loaded, err)
                    continue
                loaded.breaker.record_success()
                self._mark_success()
                return True
        return False

    def _probe_once(self, loaded: LoadedModel) -> None:
        if loaded.fast is None:
            self._synthetic(loaded)
            return
        loaded.fast.decode(np.zeros(int(WARMUP_S * TARGET_RATE_HZ), dtype=np.float32), self.cfg.language, beam_size=1)

    def _synthetic(self, loaded: LoadedModel) -> None:
        silence = np.zeros(int(WARMUP_S * TARGET_RATE_HZ), dtype=np.float32)
        list(loaded.model.transcribe(silence, language=self.cfg.language, beam_size=1)[0])

    def _mark_success(self) -> None:
        self.last_success = self._clock()
        metrics.LAST_SUCCESS.labels(self.device).set(time.time())

    def transcribe(self, audio: np.ndarray, language: str | None = None, partial: bool = False,
                   previous: str = "", score_end: bool = False) -> Result:
        """Answer with the first model of the chain that is allowed and does not fail.

        `partial`: interim text for an utterance still being spoken: greedy, one temperature,
        no timestamps; cheap, and superseded by the final anyway. `previous`: what was said just
        before this audio (the rest of the utterance, already decoded), as Whisper's prompt.
        `score_end`: also score the sentence end of the text (`Result.end_probability`; fast path only).
        """
        language = language or self.cfg.language
        if audio.size < MIN_AUDIO_S * TARGET_RATE_HZ:
            # Found by fuzzing: Whisper on a few ms of audio loops to its length cap (seconds of work).
            return Result.nothing(language, self.device, audio.size / TARGET_RATE_HZ, "too_short")
        for loaded in self.models:
            if not loaded.breaker.allow():
                continue
            try:
                result = self._run(loaded, audio, language, partial, previous, score_end)
            except Exception as err:  # engine failure: count it, open the breaker, try the next model
                self._on_failure(loaded, err)
                continue
            loaded.breaker.record_success()
            self._mark_success()
            self._update_gauges()
            return result
        raise NoModelError(f"every model of {[m.name for m in self.models]} failed or is cooling down")

    def _run(self, loaded: LoadedModel, audio: np.ndarray, language: str, partial: bool, previous: str = "",
             score_end: bool = False) -> Result:
        # Timed from the start: a fast-path attempt the guard refused is part of this request's cost.
        started = time.perf_counter()
        if self._fault is not None and not partial:
            self._fault()
        if loaded.fast is not None and (partial or self.cfg.fast_path):
            cancelled = None
            if partial:
                self._partial_preempted.clear()
                cancelled = self._partial_preempted.is_set
            fast = loaded.fast.decode(audio, language, beam_size=1 if partial else self.cfg.fast_beam_size,
                                      cancelled=cancelled, previous=previous, score_end=score_end and not partial)
            if fast.rejected is not None:
                metrics.FAST_PATH_REJECTED.labels(loaded.name, fast.rejected).inc()
            if fast.rejected is None or partial:  # a refused partial is dropped, never redone
                signal = SegmentSignal(fast.text, fast.no_speech_prob, fast.avg_logprob)
                duration_s = round(audio.size / TARGET_RATE_HZ, 2)
                return self._finish(loaded, audio, language, partial, started, [signal],
                                    [{"start_s": 0.0, "end_s": duration_s, "text": fast.text}], fast.rejected,
                                    fast.end_probability)
        options = PARTIAL_OPTIONS if partial else {"beam_size": self.cfg.beam_size}
        segments, _info = loaded.model.transcribe(
            audio, language=language, vad_filter=False, condition_on_previous_text=False, initial_prompt=previous or None,
            no_speech_threshold=self.cfg.no_speech_threshold, log_prob_threshold=self.cfg.log_prob_threshold, **options)
        segments = list(segments)  # the generator does the work: consume it inside the timed block
        signals = [SegmentSignal(s.text, s.no_speech_prob, s.avg_logprob) for s in segments]
        kept = [segments[i] for i in speech_segments(signals, self.cfg.no_speech_threshold, self.cfg.log_prob_threshold)]
        return self._finish(loaded, audio, language, partial, started, signals,
                            [{"start_s": s.start, "end_s": s.end, "text": s.text.strip()} for s in kept])

    def preempt_partial(self) -> None:
        """From another thread: the partial being decoded is no longer wanted (a final is waiting)."""
        self._partial_preempted.set()

    def _finish(self, loaded: LoadedModel, audio: np.ndarray, language: str, partial: bool, started: float,
                signals: list[SegmentSignal], kept: list[dict], rejected: str | None = None,
                end_probability: float = -1.0) -> Result:
        """Speech or not, metrics, and the Result; shared by the fast and the standard path."""
        elapsed = time.perf_counter() - started
        reason = rejected or non_speech_reason(signals, language, self.cfg.no_speech_threshold,
                                               self.cfg.log_prob_threshold)
        if not partial:
            metrics.LATENCY.labels(loaded.name, self.device).observe(elapsed)
        outcome = "partial" if partial else "ok" if reason is None else "non_speech"
        metrics.TRANSCRIPTIONS.labels(loaded.name, self.device, outcome).inc()
        return Result(
            text="" if reason else " ".join(k["text"].strip() for k in kept).strip(),
            segments=[] if reason else kept, language=language, model_used=loaded.name, device=self.device,
            audio_duration_s=audio.size / TARGET_RATE_HZ, processing_time_s=elapsed, non_speech_reason=reason,
            end_logprob=signals[-1].avg_logprob if signals else 0.0, end_probability=end_probability)

    def _on_failure(self, loaded: LoadedModel, err: Exception) -> None:
        kind = "cuda" if gpu.is_cuda_error(err) else "inference"  # closed set (metrics.ERROR_KINDS)
        if self.device == "cuda" and kind == "cuda":
            gpu.release_cuda_cache()
        loaded.breaker.record_failure()
        self.failures += 1
        metrics.ERRORS.labels(loaded.name, self.device, kind).inc()
        metrics.TRANSCRIPTIONS.labels(loaded.name, self.device, "error").inc()
        self.log.error("model_failed", model=loaded.name, error=f"{type(err).__name__}: {err}",
                       breaker=loaded.breaker.state.name.lower())
        self._update_gauges()

    def _update_gauges(self) -> None:
        for loaded in self.models:
            metrics.BREAKER_STATE.labels(loaded.name, self.device).set(int(loaded.breaker.state))
        if self.device == "cuda":
            for info in self._probe():
                if info.index == self.device_index:
                    metrics.VRAM_USAGE.labels(f"cuda:{info.index}").set(info.total_bytes - info.free_bytes)

    def breaker_states(self) -> dict[str, str]:
        return {m.name: m.breaker.state.name.lower() for m in self.models}

    def close(self) -> None:
        self.models.clear()
