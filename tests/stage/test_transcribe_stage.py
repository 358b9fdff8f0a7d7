"""TranscribeStage in-process, with scripted models: answers, re-sends, speculation, preemption,
breakers and giving up. The real model on real speech runs in tests/integration."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

from pipeline import frames, metrics
from pipeline.config import PipelineConfig, TranscribeConfig, WorkerConfig
from pipeline.exitcodes import ExitCode
from pipeline.harness.stage_driver import StageDriver
from pipeline.lifecycle import StageFailed, StageStartError
from pipeline.transcription.engine import Engine
from pipeline.transcription.fastpath import FastResult
from stages.transcribe import TranscribeStage
from tests.fakes import FakeWhisper, factory, gpus

SAMPLES = 16000  # 1 s


def worker(tmp_path, models: dict, device: str = "cpu", fast_path: bool = False, probe=gpus(8000),
           start: bool = True, **options) -> StageDriver:
    name = "transcribe_gpu" if device == "cuda" else "transcribe_cpu"
    wcfg = WorkerConfig(device=device, models=list(models))
    cfg = TranscribeConfig(fast_path=fast_path, **options)
    engine = Engine(wcfg, cfg, cache_dir=tmp_path, model_factory=factory(models), gpu_probe=probe)
    return WorkerDriver(TranscribeStage(name, wcfg, cfg, tmp_path, tmp_path, engine=engine), start=start)


class WorkerDriver(StageDriver):
    """Jobs on the worker's one port; every job's answers must end with its credit (the dispatcher
    gives it nothing more until then)."""

    def job(self, frame: frames.Frame) -> list:
        done = self.stage._done
        *answers, (port, credit) = self.send("dispatch", frame)
        assert port == "dispatch" and credit == frames.WorkerReady(self.stage.name, self.stage.pool, os.getpid(),
                                                                   done + 1, idle=True)
        assert all(port == "dispatch" for port, _ in answers)
        return answers


def utterance(utt_id: str = "u1", samples: int = SAMPLES, **fields) -> frames.Utterance:
    return frames.Utterance(utt_id=utt_id, start_s=2.0, end_s=2.0 + samples / 16000, t_closed_wall_s=time.time(),
                            sample_rate_hz=16000, pcm=np.full(samples, 0.01, dtype=np.float32).tobytes(), **fields)


def test_a_final_gets_one_transcript_built_from_the_engines_result(tmp_path):
    out = worker(tmp_path, {"cpu-a": FakeWhisper("bonjour")}).job(utterance())
    [(port, t)] = out
    assert port == "dispatch" and isinstance(t, frames.Transcript)
    assert (t.utt_id, t.text, t.model_used, t.device, t.worker) == ("u1", "bonjour", "cpu-a", "cpu", "transcribe_cpu")
    assert t.segments == [{"start_s": 0.0, "end_s": 1.0, "text": "bonjour"}] and t.is_speech
    assert (t.start_s, t.end_s, t.audio_duration_s) == (2.0, 3.0, 1.0) and t.rtf == t.processing_time_s / 1.0


def test_a_resent_final_is_answered_again_without_a_second_decode(tmp_path):
    model = FakeWhisper("bonjour")
    driver = worker(tmp_path, {"cpu-a": model})
    first = driver.job(utterance())
    calls = model.calls
    assert driver.job(utterance()) == first and model.calls == calls


def test_the_speculative_answer_is_the_final_when_only_silence_followed(tmp_path):
    model = FakeWhisper("bonjour")
    driver = worker(tmp_path, {"cpu-a": model})
    [(port, verdict)] = driver.job(utterance(samples=SAMPLES, speculative=True))  # kept, judged
    assert isinstance(verdict, frames.TurnHint) and verdict == frames.TurnHint(utt_id="u1", speculated_samples=SAMPLES, complete=False,
                                                          reason="no_sentence_end", end_logprob=-0.2)  # no full stop
    calls = model.calls
    [(_, final)] = driver.job(utterance(samples=SAMPLES + 6400, speculated_samples=SAMPLES))
    assert final.text == "bonjour" and model.calls == calls  # no second decode
    driver.job(utterance("u2", speculative=True))
    driver.job(utterance("u2", samples=SAMPLES + 9000, speculated_samples=SAMPLES + 512))
    assert model.calls == calls + 2  # speech followed the copy: the final is decoded again


def test_a_pool_member_names_itself_and_its_class_and_says_busy_while_a_job_runs(tmp_path):
    wcfg, cfg = WorkerConfig(models=["cpu-a"]), TranscribeConfig(fast_path=False)
    engine = Engine(wcfg, cfg, cache_dir=tmp_path, model_factory=factory({"cpu-a": FakeWhisper("bonjour")}))
    driver = WorkerDriver(TranscribeStage("transcribe_cpu.1", wcfg, cfg, tmp_path, tmp_path, engine=engine))
    assert list(driver.stage.inputs) == list(driver.stage.outputs) == ["dispatch"]  # one DEALER, both ways
    assert driver.stage.inputs["dispatch"].pattern == "dealer"
    [(_, credit)] = driver.stage.heartbeat_outputs(busy=True)
    assert (credit.worker, credit.pool, credit.done, credit.idle) == ("transcribe_cpu.1", "transcribe_cpu", 0, False)
    [(_, final)] = driver.job(utterance("u1", source="mic:salon"))
    assert final.worker == "transcribe_cpu.1" and final.source == "mic:salon"
    [(_, credit)] = driver.stage.heartbeat_outputs(busy=False)
    assert (credit.done, credit.idle) == (1, True)


class ListeningWhisper(FakeWhisper):
    """Also notes what it was given: how much audio, and the previous-text prompt."""
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.heard: list[tuple[int, str | None]] = []

    def transcribe(self, audio, **kwargs):
        self.heard.append((audio.size, kwargs.get("initial_prompt")))
        return super().transcribe(audio, **kwargs)


def test_speech_resumed_after_a_long_decoded_stretch_is_decoded_from_there_with_its_text_as_prompt(tmp_path):
    model = ListeningWhisper("bonjour")
    driver = worker(tmp_path, {"cpu-a": model}, stretch_min_s=3.0)
    model.heard.clear()  # the warm-up's
    driver.job(utterance(samples=4 * SAMPLES, speculative=True))  # a pause after 4 s of speech
    [(_, final)] = driver.job(utterance(samples=5 * SAMPLES))      # then 1 s more
    assert model.heard == [(4 * SAMPLES, None), (SAMPLES, "bonjour")]
    assert final.text == "bonjour bonjour" and final.audio_duration_s == 5.0 and final.is_speech
    assert final.segments == [{"start_s": 0.0, "end_s": 4.0, "text": "bonjour"},
                              {"start_s": 4.0, "end_s": 5.0, "text": "bonjour"}]
    driver.job(utterance("u2", samples=4 * SAMPLES, speculative=True))
    driver.job(utterance("u2", samples=4 * SAMPLES + 3200))  # 0.2 s more: too little to stand alone
    assert model.heard[-1] == (4 * SAMPLES + 3200, None)
    restarted = worker(tmp_path, {"cpu-a": model}, stretch_min_s=3.0)
    restarted.job(utterance("u1", samples=5 * SAMPLES))  # a new worker knows no stretch: all of it
    assert model.heard[-1] == (5 * SAMPLES, None)
    off = worker(tmp_path, {"cpu-a": model})  # the default: off
    off.job(utterance("u3", samples=4 * SAMPLES, speculative=True))
    off.job(utterance("u3", samples=5 * SAMPLES))
    assert model.heard[-1] == (5 * SAMPLES, None)


def test_the_rest_after_a_stretch_is_decoded_from_where_its_pause_began(tmp_path):
    model = ListeningWhisper("bonjour")
    driver = worker(tmp_path, {"cpu-a": model}, stretch_min_s=3.0)
    model.heard.clear()
    pause = SAMPLES // 4  # the copy left after 250 ms of silence
    driver.job(utterance(samples=4 * SAMPLES, speculative=True, pause_samples=pause))
    [(_, final)] = driver.job(utterance(samples=5 * SAMPLES))
    assert model.heard[-1] == (SAMPLES + pause, "bonjour")  # the pause, then the new second of speech
    head, tail = final.segments
    assert head == {"start_s": 0.0, "end_s": 3.75, "text": "bonjour"} and tail["start_s"] == 3.75
    assert final.audio_duration_s == 5.0 and final.text == "bonjour bonjour"


def test_a_finished_sentence_is_put_to_smart_turn_and_an_unfinished_one_is_not(tmp_path):
    wcfg, cfg = WorkerConfig(models=["cpu-a"]), TranscribeConfig(fast_path=False)
    for text, asked in (("Bonjour.", True), ("Bonjour et", False)):
        engine = Engine(wcfg, cfg, cache_dir=tmp_path, model_factory=factory({"cpu-a": FakeWhisper(text)}))
        stage = TranscribeStage("transcribe_cpu", wcfg, cfg, PipelineConfig().models_cache_dir(), tmp_path,
                                engine=engine)
        [(_, verdict)] = WorkerDriver(stage).job(utterance(speculative=True))
        assert stage.turn_model is not None  # the real model (scripts/setup provisions it)
        assert (0.0 <= verdict.turn_probability <= 1.0) if asked else verdict.turn_probability == -1.0


def test_without_the_turn_model_file_the_text_alone_decides(tmp_path):
    driver = worker(tmp_path, {"cpu-a": FakeWhisper("Bonjour.")})  # cache dir: an empty tmp_path
    [(_, verdict)] = driver.job(utterance(speculative=True))
    assert driver.stage.turn_model is None and verdict.reason == "sentence_end" and verdict.turn_probability == -1.0


def test_unusable_audio_is_acknowledged_empty_and_counted(tmp_path):
    before = metrics.BAD_INPUT.labels("transcribe_cpu", "bad_audio")._value.get()
    bad = frames.Utterance(utt_id="u1", start_s=0, end_s=1, t_closed_wall_s=0.0, sample_rate_hz=16000, pcm=b"\x00" * 7)
    [(_, t)] = worker(tmp_path, {"cpu-a": FakeWhisper()}).job(bad)
    assert t.is_speech is False and t.text == "" and t.utt_id == "u1"
    assert metrics.BAD_INPUT.labels("transcribe_cpu", "bad_audio")._value.get() == before + 1


def test_an_unknown_language_code_is_bad_input_not_a_model_failure(tmp_path):
    before = metrics.BAD_INPUT.labels("transcribe_cpu", "bad_audio")._value.get()
    driver = worker(tmp_path, {"cpu-a": FakeWhisper("bonjour")})
    for n in range(4):  # more than the breaker's failure threshold: it must never open on a client's code
        [(_, t)] = driver.job(utterance(f"u{n}", language="gowA"))
        assert t.is_speech is False and t.text == ""
    assert metrics.BAD_INPUT.labels("transcribe_cpu", "bad_audio")._value.get() == before + 4
    [(_, good)] = driver.job(utterance("u9", language="fr"))
    assert good.text == "bonjour"  # the worker still answers


def test_a_failing_model_trips_its_breaker_and_the_next_one_answers(tmp_path):
    broken, good = FakeWhisper(), FakeWhisper("bonjour")
    driver = worker(tmp_path, {"a": broken, "b": good})
    broken.fail_with = RuntimeError("decoder exploded")  # after its warm-up
    for i in range(4):
        [(_, t)] = driver.job(utterance(f"u{i}"))
        assert t.model_used == "b"
    assert driver.stage.engine.breaker_states() == {"a": "open", "b": "closed"}
    assert broken.calls == 1 + 3  # its warm-up, then three failures; skipped while open


@pytest.mark.parametrize("probe, code", [(gpus(), ExitCode.NO_GPU), (gpus(100), ExitCode.GPU_UNAVAILABLE)])
def test_a_gpu_worker_without_a_usable_gpu_says_whether_there_is_none_or_too_little(tmp_path, probe, code):
    # None at all is a CPU-only machine's normal case (logged at info); too little memory is a fault.
    driver = worker(tmp_path, {"m": FakeWhisper()}, device="cuda", probe=probe, start=False)
    with pytest.raises(StageStartError) as refused:
        driver.stage.preload()
    assert refused.value.exit_code == code


def test_a_worker_whose_every_model_fails_gives_up_with_its_exit_code(tmp_path):
    for device, code in (("cpu", ExitCode.TRANSIENT), ("cuda", ExitCode.GPU_UNAVAILABLE)):
        model = FakeWhisper()
        driver = worker(tmp_path / device, {"only": model}, device=device)
        model.fail_with = RuntimeError("CUDA failed with error out of memory")
        with pytest.raises(StageFailed) as failed:
            driver.job(utterance())
        assert failed.value.exit_code == code  # the VAD still holds the utterance: it goes elsewhere


class BlockingFastDecoder:
    """A partial's decode that runs until the engine says it is no longer wanted."""

    def __init__(self) -> None:
        self.started, self.finished = threading.Event(), threading.Event()

    def decode(self, audio, language, beam_size=1, cancelled=None, previous="", score_end=False) -> FastResult:
        self.started.set()
        while not cancelled():
            if self.finished.wait(0.005):  # the test's own bound, in case preempt never comes
                break
        return FastResult("", 0.0, 0.0, "preempted" if cancelled() else None)


def test_preempt_stops_the_partial_being_decoded_and_nothing_is_sent(tmp_path, log_capture):
    driver = worker(tmp_path, {"cpu-a": FakeWhisper()})
    fast = driver.stage.engine.models[0].fast = BlockingFastDecoder()
    out: list = []
    decoding = threading.Thread(target=lambda: out.extend(driver.job(utterance(is_partial=True))))
    decoding.start()
    assert fast.started.wait(5)
    driver.stage.preempt()  # what the runner calls when a final arrives behind the partial
    decoding.join(5)
    fast.finished.set()
    assert not decoding.is_alive() and out == []
    assert [e for e in log_capture.entries if e["event"] == "partial_preempted"]


def test_a_heartbeat_never_credits_a_job_whose_answers_have_not_left(tmp_path):
    driver = worker(tmp_path, {"cpu-a": FakeWhisper("bonjour")})
    stage = driver.stage
    *answers, (_, credit) = stage.handle("dispatch", utterance())  # answered, nothing sent yet
    [(_, beat)] = stage.heartbeat_outputs(busy=False)  # the runner's heartbeat may come before its flush
    assert (beat.done, beat.idle) == (0, False) and credit.done == 1
    stage.sent("dispatch", credit)  # the job's own credit handed to ZeroMQ, after its answers
    [(_, beat)] = stage.heartbeat_outputs(busy=False)
    assert (beat.done, beat.idle) == (1, True)
