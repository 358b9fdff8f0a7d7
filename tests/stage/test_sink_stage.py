"""SinkStage in-process: each final published once and acknowledged every time; partials never after it."""

from __future__ import annotations

from pipeline import frames, history, metrics, topology
from pipeline.harness.stage_driver import StageDriver, of_kind
from pipeline.transport import PortSpec
from stages.sink import SinkStage


def sink(run_dir) -> StageDriver:
    return StageDriver(SinkStage(run_dir, PortSpec("pub", f"ipc://{run_dir}/t.sock", bind=True), join_s=0.0))


def transcript(utt_id: str, text: str = "Cette conférence est pleine.", **fields) -> frames.Transcript:
    fields = {"worker": "transcribe_cpu", "is_speech": True, **fields}
    return frames.Transcript(utt_id=utt_id, text=text, language="fr", segments=[], model_used="base", device="cpu",
                             audio_duration_s=1.9, processing_time_s=0.2, rtf=0.1, t_closed_wall_s=1000.0, **fields)


def duplicates() -> float:
    return metrics.DUPLICATES.labels("sink")._value.get()


def test_a_final_is_published_once_and_a_duplicate_only_repeated_privately(tmp_path):
    driver = sink(tmp_path)
    first = driver.send("results", transcript("u1"))
    assert [(p, f.KIND) for p, f in first] == [("public", "transcript"), ("internal", "transcript"), ("internal", "ack")]
    published = first[0][1]
    assert published.text == "Cette conférence est pleine." and published.t_published_wall_s > 0
    before = duplicates()
    again = driver.send("results", transcript("u1", worker="transcribe_gpu"))  # re-sent after a failover
    assert [(p, f.KIND) for p, f in again] == [("internal", "transcript"), ("internal", "ack")]  # never public
    assert duplicates() == before + 1


def test_a_restarted_sink_remembers_what_was_published(tmp_path):
    driver = sink(tmp_path)
    driver.send("results", transcript("u1"))
    driver.close()  # or SIGKILLed: the ids were appended as each was handed to ZeroMQ
    assert [(p, f.KIND) for p, f in sink(tmp_path).send("results", transcript("u1"))] == [
        ("internal", "transcript"), ("internal", "ack")]


def test_non_speech_is_acknowledged_never_published(tmp_path):
    out = sink(tmp_path).send("results", transcript("u2", text="", is_speech=False))
    assert out == [("internal", frames.Ack(utt_id="u2"))]


def test_partials_go_out_before_their_final_never_after_and_are_not_acknowledged(tmp_path):
    driver = sink(tmp_path)
    early = driver.send("results", transcript("u3", text="Cette", is_partial=True))
    assert [(p, f.is_partial) for p, f in early] == [("public", True)]
    driver.send("results", transcript("u3"))
    assert driver.send("results", transcript("u3", text="Cette conf", is_partial=True)) == []
    assert len(of_kind(driver.outputs, frames.Ack)) == 1


def test_finals_are_numbered_in_the_history_before_they_go_out_and_each_heartbeat_says_the_last(tmp_path):
    driver = sink(tmp_path)
    assert driver.tick(0) == []  # nothing published yet: nothing to say
    numbered = [driver.send("results", transcript(u))[0][1] for u in ("u1", "u2")]
    assert [t.pub_seq for t in numbered] == [1, 2] and numbered[0].history == numbered[1].history
    assert [t.utt_id for t in history.read(topology.history(tmp_path))] == ["u1", "u2"]
    assert driver.tick(0) == [("public", frames.History(numbered[0].history, 2))]


def test_a_final_in_the_history_counts_as_published_even_if_the_sink_died_before_sending_it(tmp_path):
    kept = history.TranscriptHistory(topology.history(tmp_path))
    kept.numbered(transcript("u1"))  # a sink SIGKILLed between the history's write and the send
    kept.close()
    out = sink(tmp_path).send("results", transcript("u1"))  # the VAD sends it again
    assert [(p, f.KIND) for p, f in out] == [("internal", "transcript"), ("internal", "ack")]
