"""DispatchStage in-process: jobs from every lane's VAD to free workers, answers back where they go."""

from __future__ import annotations

from pipeline import frames
from pipeline.harness.stage_driver import StageDriver
from pipeline.peers import addressed
from pipeline.runner import CONTROL
from stages.dispatch import DispatchStage

CPU = "transcribe_cpu"


def dispatcher(tmp_path, lanes: int = 2) -> StageDriver:
    return StageDriver(DispatchStage(tmp_path, ["transcribe_gpu", CPU], lanes, liveness_s=3.0))


def utt(utt_id: str, **fields) -> frames.Utterance:
    return frames.Utterance(utt_id, 0.0, 1.0, 0.0, 16000, b"\0" * 400, **fields)


def credit(worker: str, done: int = 0, pid: int = 11) -> frames.WorkerReady:
    return frames.WorkerReady(worker, CPU, pid, done, idle=True)


def test_finals_ports_come_before_partials_of_any_lane_and_workers_before_both(tmp_path):
    stage = dispatcher(tmp_path).stage
    assert list(stage.inputs) == ["pool", "transcribe_gpu", CPU, "transcribe_gpu.1", f"{CPU}.1",
                                  "partial_transcribe_gpu", f"partial_{CPU}", "partial_transcribe_gpu.1",
                                  f"partial_{CPU}.1"]
    assert stage.inputs["pool"].pattern == "router" and stage.inputs["pool"].bind


def test_a_job_goes_to_a_free_worker_and_its_answers_go_to_the_sink_and_its_lanes_vad(tmp_path):
    driver = dispatcher(tmp_path)
    a, b = addressed("pool", b"A"), addressed("pool", b"B")
    assert driver.send(f"{CPU}.1", utt("u1", speculative=True)) == []  # no worker yet: held
    assert driver.send(a, credit("transcribe_cpu")) == [(a, utt("u1", speculative=True))]
    assert driver.send(b, credit("transcribe_cpu.1", pid=12)) == []
    assert driver.send(CPU, utt("u2")) == [(b, utt("u2"))]  # a is busy
    hint = frames.TurnHint("u1", 100, True, "sentence_end")
    assert driver.send(a, hint) == [("hints.1", hint)]  # lane 1's VAD sent the copy
    transcript = frames.Transcript("u2", "bonjour", "fr", [], "base", "cpu", "transcribe_cpu.1", 1.0, 0.1, 0.1, True,
                                   0.0, source="mic:salon")
    assert driver.send(b, transcript) == [("results", transcript)]


def test_a_local_worker_the_supervisor_no_longer_owns_gives_its_job_to_another(tmp_path, log_capture):
    driver = dispatcher(tmp_path)
    a, b = addressed("pool", b"A"), addressed("pool", b"B")
    driver.send(a, credit("transcribe_cpu", pid=11))
    driver.send(CPU, utt("u1"))
    assert driver.send(b, credit("transcribe_cpu.1", pid=12)) == []
    assert driver.send(CONTROL, frames.Owned(1, [12])) == [(b, utt("u1"))]
    [gone] = [e for e in log_capture.entries if e["event"] == "worker_vanished"]
    assert gone["worker"] == "transcribe_cpu" and gone["requeued"] == ["u1"]
    assert driver.send(CPU, utt("u1")) == []  # the VAD's re-send: b already has it
