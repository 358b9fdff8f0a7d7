"""Fallback chain, breakers, GPU choice and hallucination filtering, with injected faults."""

import numpy as np
import pytest

from pipeline.config import TranscribeConfig, WorkerConfig
from pipeline.transcription.breaker import BreakerState
from pipeline.transcription.engine import Engine, NoModelError
from pipeline.transcription.gpu import GpuUnavailableError
from tests.fakes import CudaOutOfMemory, FakeSegment, FakeWhisper, factory, gpus

AUDIO = np.zeros(16000, dtype=np.float32)


def engine(models: dict, device="cpu", probe=gpus(), clock=None, **worker):
    wcfg = WorkerConfig(device=device, models=list(models), **worker)
    kwargs = {"clock": clock} if clock else {}
    return Engine(wcfg, TranscribeConfig(), cache_dir=None, model_factory=factory(models), gpu_probe=probe, **kwargs)


def test_model_that_fails_to_load_is_skipped():
    e = engine({"broken": OSError("model.bin: truncated"), "small": FakeWhisper("salut")})
    e.load()
    assert [m.name for m in e.models] == ["small"]
    assert e.transcribe(AUDIO).model_used == "small"


def test_no_model_loads_is_an_error():
    with pytest.raises(NoModelError):
        engine({"a": OSError("x")}).load()


def test_failure_mid_request_is_answered_by_the_next_model():
    first, second = FakeWhisper(fail_with=RuntimeError("decoder exploded")), FakeWhisper("bonjour à tous")
    e = engine({"first": first, "second": second})
    e.load()
    result = e.transcribe(AUDIO)
    assert (result.text, result.model_used) == ("bonjour à tous", "second")
    assert first.calls == 1 and second.calls == 1


def test_breaker_skips_a_failing_model_then_half_opens(fake_clock):
    first, second = FakeWhisper(fail_with=RuntimeError("boom")), FakeWhisper("ok")
    e = engine({"first": first, "second": second}, clock=fake_clock)
    e.load()
    for _ in range(3):
        e.transcribe(AUDIO)
    assert e.breaker_states()["first"] == "open"
    e.transcribe(AUDIO)
    assert first.calls == 3  # skipped while open
    fake_clock.advance(30)
    first.fail_with = None
    assert e.transcribe(AUDIO).model_used == "first"  # the half-open trial succeeded
    assert e.models[0].breaker.state is BreakerState.CLOSED


def test_every_model_failing_raises_so_the_utterance_goes_elsewhere():
    e = engine({"a": FakeWhisper(fail_with=CudaOutOfMemory())}, device="cuda", probe=gpus(8000))
    e.load()
    with pytest.raises(NoModelError):
        e.transcribe(AUDIO)


def test_gpu_with_most_free_memory_is_chosen():
    model = FakeWhisper()
    e = engine({"m": model}, device="cuda", probe=gpus(2000, 30000, 10000))
    e.load()
    assert model.loaded_on == ("cuda", 1, "float16")


@pytest.mark.parametrize("probe, message", [
    (gpus(), "no CUDA device"),
    (gpus(500, 800), "800 MiB free, below the configured floor of 1024 MiB"),
])
def test_gpu_worker_refuses_without_a_usable_gpu(probe, message):
    with pytest.raises(GpuUnavailableError, match=message):
        engine({"m": FakeWhisper()}, device="cuda", probe=probe).load()


def test_cpu_uses_int8_by_default():
    model = FakeWhisper()
    engine({"m": model}).load()
    assert model.loaded_on == ("cpu", 0, "int8")


@pytest.mark.parametrize("segments, reason", [
    ([FakeSegment(" Sous-titres réalisés par la communauté d'Amara.org")], "known_hallucination"),
    ([FakeSegment(" Merci d'avoir regardé cette vidéo !")], "known_hallucination"),
    ([FakeSegment(" Bonjour", no_speech_prob=0.9, avg_logprob=-1.5)], "no_speech"),
    ([], "empty"),
    ([FakeSegment(" ...")], "no_speech"),
])
def test_non_speech_results_publish_nothing(segments, reason):
    e = engine({"m": FakeWhisper(segments=segments)})
    e.load()
    result = e.transcribe(AUDIO)
    assert result.non_speech_reason == reason and result.text == "" and result.segments == []


def test_confident_speech_with_a_silent_segment_keeps_only_the_speech():
    segs = [FakeSegment(" Bonjour Luxa.", 0.0, 1.0), FakeSegment(" Merci.", 1.0, 2.0, no_speech_prob=0.95, avg_logprob=-2)]
    e = engine({"m": FakeWhisper(segments=segs)})
    e.load()
    result = e.transcribe(AUDIO)
    assert result.text == "Bonjour Luxa." and len(result.segments) == 1


class RecordingFastDecoder:
    def __init__(self) -> None:
        self.calls = 0

    def decode(self, audio, language, beam_size=1, cancelled=None):
        self.calls += 1
        return None


def test_the_health_probe_uses_the_cheap_short_window_decoder_when_there_is_one():
    model = FakeWhisper()
    e = engine({"a": model})
    e.load()
    e.models[0].fast = fast = RecordingFastDecoder()
    calls = model.calls
    assert e.probe() is True and fast.calls == 1 and model.calls == calls  # not the 30 s window
