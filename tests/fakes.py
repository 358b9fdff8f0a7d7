"""Fakes for the transcription engine: a scripted Whisper model and GPU probes."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.transcription.gpu import GpuInfo


@dataclass
class FakeSegment:
    text: str
    start: float = 0.0
    end: float = 1.0
    no_speech_prob: float = 0.01
    avg_logprob: float = -0.2


class CudaOutOfMemory(RuntimeError):
    def __init__(self) -> None:
        super().__init__("CUDA failed with error out of memory")


class FakeWhisper:
    """`transcribe` answers `text`, or raises `fail_with` (an exception instance) when set."""

    def __init__(self, text: str = "bonjour", fail_with: Exception | None = None,
                 segments: list[FakeSegment] | None = None) -> None:
        self.text, self.fail_with, self.segments = text, fail_with, segments
        self.calls = 0

    def transcribe(self, audio, **kwargs):
        self.calls += 1
        if self.fail_with is not None:
            raise self.fail_with
        segments = self.segments if self.segments is not None else [FakeSegment(self.text)]
        return iter(segments), None


def factory(models: dict[str, FakeWhisper | Exception]):
    """A model_factory for Engine: maps the resolved path (= name for unregistered names) to a fake."""
    def make(path, device, device_index, compute_type, cpu_threads):
        model = models[path]
        if isinstance(model, Exception):
            raise model
        model.loaded_on = (device, device_index, compute_type)
        return model
    return make


def gpus(*free_mib: int, total_mib: int = 80000):
    return lambda: [GpuInfo(i, f"Fake GPU {i}", f << 20, total_mib << 20) for i, f in enumerate(free_mib)]


class ScriptedVad:
    """Silero's place in VadStage (pipecat's MockVADAnalyzer): one scripted probability per window."""

    def __init__(self, probs: list[float]) -> None:
        self.probs = list(probs)
        self.calls = 0

    def __call__(self, window, rate: int) -> float:
        self.calls += 1
        return self.probs.pop(0) if self.probs else 0.0

    def reset(self) -> None:
        pass
