"""RobustSTTManager's contract with fake models and injected GPU faults (no GPU on CI)."""

import asyncio

import numpy as np
import pytest

from pipeline.audio import AudioInputError
from pipeline.config import TranscribeConfig
from pipeline.stt import RobustSTTManager
from pipeline.testmode import TEST_RECORDING
from pipeline.transcription.engine import NoModelError
from pipeline.transcription.gpu import GpuUnavailableError
from tests.fakes import CudaOutOfMemory, FakeWhisper, factory, gpus

# No speech gate: these tests are about the engine paths, fed silence (tests/integration has the gate).
CONFIG = {"gpu": {"models": ["gpu-a", "gpu-b"]}, "cpu": {"models": ["cpu-a"]}, "use_vad": False}


def manager(models: dict, probe=gpus(), vad=None, **kwargs) -> RobustSTTManager:
    return RobustSTTManager(CONFIG, vad, model_factory=factory(models), gpu_probe=probe, **kwargs)


def run(coro):
    return asyncio.run(coro)


def test_empty_config_means_the_shipped_defaults():
    cfg = RobustSTTManager({}).cfg
    assert TranscribeConfig.model_validate(cfg.model_dump(exclude={"use_vad", "model_cache_dir"})) == TranscribeConfig()
    assert cfg.use_vad is True and cfg.model_cache_dir is None


def test_auto_uses_the_cpu_chain_without_a_gpu():
    m = manager({"cpu-a": FakeWhisper("bonjour")})
    run(m.initialize())
    result = run(m.transcribe_audio(TEST_RECORDING.read_bytes()))
    assert result["text"] == "bonjour" and result["device"] == "cpu" and result["model_used"] == "cpu-a"
    assert abs(result["metrics"]["audio_duration"] - 13.88) < 0.01
    assert result["metrics"]["rtf"] == pytest.approx(result["processing_time"] / result["metrics"]["audio_duration"])
    assert result["segments"] == [{"start": 0.0, "end": 1.0, "text": "bonjour"}]


def test_auto_uses_the_gpu_when_one_is_usable():
    gpu_model = FakeWhisper("depuis le gpu")
    m = manager({"gpu-a": gpu_model, "gpu-b": FakeWhisper(), "cpu-a": FakeWhisper()}, probe=gpus(500, 20000))
    run(m.initialize())
    assert gpu_model.loaded_on == ("cuda", 1, "float16")
    assert run(m.transcribe_audio(np.zeros(8000, dtype=np.float32)))["device"] == "cuda"


def test_cuda_forced_without_a_gpu_is_a_clear_error():
    with pytest.raises(GpuUnavailableError, match="no CUDA device"):
        run(manager({}, device="cuda").initialize())


def test_out_of_memory_mid_request_moves_down_the_chain_then_to_the_cpu():
    a, b = FakeWhisper(), FakeWhisper("second gpu model")
    cpu = FakeWhisper("cpu answer")
    m = manager({"gpu-a": a, "gpu-b": b, "cpu-a": cpu}, probe=gpus(8000))
    run(m.initialize())
    a.fail_with = CudaOutOfMemory()
    assert run(m.transcribe_audio(np.zeros(8000, dtype=np.float32)))["model_used"] == "gpu-b"
    b.fail_with = CudaOutOfMemory()
    result = run(m.transcribe_audio(np.zeros(8000, dtype=np.float32)))
    assert (result["model_used"], result["device"], result["text"]) == ("cpu-a", "cpu", "cpu answer")
    stats = m.get_metrics()
    assert stats["errors"] == 3 and stats["transcriptions"] == 2
    assert stats["models_loaded"] == ["gpu-a@cuda", "gpu-b@cuda", "cpu-a@cpu"]


def test_without_cpu_fallback_the_failure_is_raised_for_the_worker_to_hand_over():
    only = FakeWhisper()
    m = manager({"gpu-a": only, "gpu-b": OSError("missing")}, probe=gpus(8000), device="cuda", cpu_fallback=False)
    run(m.initialize())
    only.fail_with = CudaOutOfMemory()
    with pytest.raises(NoModelError):
        run(m.transcribe_audio(np.zeros(8000, dtype=np.float32)))


@pytest.mark.parametrize("audio", [b"", b"not audio at all", np.array([np.nan], dtype=np.float32),
                                   np.zeros(16000 * 61, dtype=np.float32)])
def test_bad_audio_is_a_client_error_that_never_trips_a_breaker(audio):
    model = FakeWhisper()
    m = manager({"cpu-a": model})
    run(m.initialize())
    for _ in range(5):
        with pytest.raises(AudioInputError) as err:
            run(m.transcribe_audio(audio))
        assert isinstance(err.value, ValueError) and str(err.value)
    stats = m.get_metrics()
    assert stats["client_errors"] == 5 and stats["errors"] == 0
    assert stats["breakers"] == {"cpu-a@cpu": "closed"} and model.calls == 1  # the warm-up only


def test_vad_manager_skips_non_speech_without_calling_the_model():
    class NoSpeech:
        def has_speech(self, samples):
            return False

    model = FakeWhisper()
    m = RobustSTTManager({**CONFIG, "use_vad": True}, NoSpeech(), model_factory=factory({"cpu-a": model}),
                         gpu_probe=gpus())
    run(m.initialize())
    result = run(m.transcribe_audio(np.zeros(16000, dtype=np.float32)))
    assert result["text"] == "" and result["is_speech"] is False and model.calls == 1
    assert m.get_metrics()["vad_enabled"] is True


def test_get_metrics_reports_the_original_fields():
    m = manager({"cpu-a": FakeWhisper()})
    run(m.initialize())
    run(m.transcribe_audio(np.zeros(16000, dtype=np.float32)))
    stats = m.get_metrics()
    assert {"transcriptions", "errors", "avg_latency", "device", "models_loaded", "vad_enabled"} <= set(stats)
    assert stats["transcriptions"] == 1 and stats["avg_latency"] >= 0 and stats["device"] == "cpu"


def test_transcribe_before_initialize_and_cleanup():
    m = manager({"cpu-a": FakeWhisper()})
    with pytest.raises(RuntimeError, match="initialize"):
        m.transcribe_now(np.zeros(10, dtype=np.float32))
    run(m.initialize())
    run(m.cleanup())
    assert m.engine is None


def test_probe_keeps_health_fresh_and_fails_over_inside_the_chain():
    first, second = FakeWhisper(), FakeWhisper()
    m = manager({"gpu-a": first, "gpu-b": second}, probe=gpus(8000), device="cuda")
    run(m.initialize())
    first.fail_with = RuntimeError("boom")
    assert m.engine.probe() is True and first.calls == 2 and second.calls == 2
    second.fail_with = RuntimeError("boom too")
    assert m.engine.probe() is False


def test_model_failing_its_warm_up_is_dropped_from_the_chain():
    m = manager({"gpu-a": FakeWhisper(fail_with=RuntimeError("bad weights")), "gpu-b": FakeWhisper("b")},
                probe=gpus(8000), device="cuda")
    run(m.initialize())
    assert m.get_metrics()["models_loaded"] == ["gpu-b@cuda"]


def test_partial_gpu_section_still_means_cuda():
    assert TranscribeConfig.model_validate({"gpu": {"models": ["x"]}}).gpu.device == "cuda"


def test_audio_shorter_than_any_word_is_non_speech_without_running_the_model():
    # Found by the fuzzer: Whisper on 26 ms of audio loops to its length cap, seconds of work.
    model = FakeWhisper("hallucination")
    m = manager({"cpu-a": model})
    run(m.initialize())
    calls = model.calls  # the warm-up's
    result = run(m.transcribe_audio(np.zeros(400, dtype=np.float32)))
    assert result["is_speech"] is False and result["non_speech_reason"] == "too_short" and result["text"] == ""
    assert model.calls == calls


def test_the_original_requests_keys_are_aliases_onto_the_tree():
    def no_gpu_probe():
        raise AssertionError("use_gpu: false must not even look for a GPU")

    model = FakeWhisper("bonjour")
    m = RobustSTTManager({"use_gpu": False, "fallback_chain": ["cpu-a"], "use_vad": False, "model_cache_dir": "/x"},
                         model_factory=factory({"cpu-a": model}), gpu_probe=no_gpu_probe)
    run(m.initialize())
    assert m.cfg.gpu.enabled is False and m.cfg.gpu.models == m.cfg.cpu.models == ["cpu-a"]
    assert str(m.cache_dir) == "/x" and m.get_metrics()["models_loaded"] == ["cpu-a@cpu"]


@pytest.mark.parametrize("config, message", [
    ({"use_gpu": "perhaps"}, "gpu.enabled"), ({"fallback_chain": []}, "at least 1 item"),
    ({"use_gpu": True, "gpu": {"enabled": False}}, "keep one"), ({"use_vad": True, "vad_mode": 3}, "vad_mode"),
])
def test_aliases_are_validated_like_their_fields_and_unknown_keys_still_refused(config, message):
    with pytest.raises(ValueError, match=message):
        RobustSTTManager(config)


class ScriptedSegments:
    """A vad_manager with the original contract: process_audio -> [(start_ms, end_ms, samples)]."""

    def __init__(self, spans_ms: list[tuple[int, int]]) -> None:
        self.spans_ms = spans_ms

    def process_audio(self, samples):
        return [(a, b, samples[a * 16:b * 16]) for a, b in self.spans_ms]


def test_with_a_vad_manager_only_its_speech_segments_are_transcribed_and_joined():
    model = FakeWhisper("mot")
    vad = ScriptedSegments([(500, 1500), (3000, 4200)])
    m = RobustSTTManager({**CONFIG, "use_vad": True}, vad, model_factory=factory({"cpu-a": model}), gpu_probe=gpus())
    run(m.initialize())
    calls = model.calls
    result = run(m.transcribe_audio(np.zeros(5 * 16000, dtype=np.float32)))
    assert model.calls - calls == 2 and result["text"] == "mot mot"
    assert [(s["start"], s["end"]) for s in result["segments"]] == [(0.5, 1.5), (3.0, 4.0)]
    assert result["metrics"]["audio_duration"] == 5.0
    vad.spans_ms.clear()  # a clip where the VAD finds no speech: the model is not called
    nothing = run(m.transcribe_audio(np.zeros(16000, dtype=np.float32)))
    assert nothing["text"] == "" and nothing["non_speech_reason"] == "vad" and model.calls - calls == 2


def test_use_vad_false_ignores_the_vad_manager():
    model = FakeWhisper("bonjour")
    m = RobustSTTManager(CONFIG, ScriptedSegments([]), model_factory=factory({"cpu-a": model}), gpu_probe=gpus())
    run(m.initialize())
    assert run(m.transcribe_audio(np.zeros(16000, dtype=np.float32)))["text"] == "bonjour"
    assert m.get_metrics()["vad_enabled"] is False
