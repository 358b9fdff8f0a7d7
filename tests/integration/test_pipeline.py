"""End to end: real supervisor, five real processes, real sockets, Whisper `base` on real French speech."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import soundfile
import soxr

from pipeline import topology
from pipeline.exitcodes import ExitCode
from pipeline.harness.pipeline_process import ROOT, pid_alive, pipeline_config
from pipeline.harness.waiting import wait_until
from pipeline.testmode import keyword_hits
from pipeline.transport import PortSpec, Transport, send_raw

pytestmark = pytest.mark.slow
AUDIO = ROOT / "tests" / "data" / "audio"
STAGES = {"capture", "vad", "dispatch", "transcribe_gpu", "transcribe_cpu", "sink"}
GARBAGE = [[b"audio_chunk", b"\xc1\xc1\xc1"], [b"x"], [b"utterance", b"\x81\xa1v\x63"],
           [b"transcript", b"\x84\xa1v\x01\xa4kind\xa5stop!\xa5stage\xa1x\xa3foo\x01"]]


def inject(pipeline, stage: str, endpoint: str, messages: list[list[bytes]]) -> None:
    """Push raw garbage into a stage's socket and wait until the stage has logged every piece."""
    transport = Transport()
    sock = transport.open(PortSpec("push", endpoint, bind=False))
    for parts in messages:
        send_raw(sock, parts)
    wait_until(lambda: len(pipeline.find("frame_malformed", stage=stage)) == len(messages), 30,
               what=f"{stage} to log the malformed frames")
    transport.close()  # linger=0: closing earlier could discard frames not yet delivered


def test_test_mode_transcribes_french_through_six_processes_and_survives_garbage(run_dir, start_pipeline):
    pipeline = start_pipeline(pipeline_config(run_dir), "--test-mode")
    pipeline.wait_event("stage_up", stage_name="vad")
    pipeline.wait_event("stage_up", stage_name="sink")
    inject(pipeline, "vad", topology.audio(run_dir), GARBAGE)
    inject(pipeline, "sink", topology.results(run_dir), GARBAGE)

    assert pipeline.wait_exit() == 0, pipeline.log_tail()
    pids = pipeline.stage_pids()
    assert set(pids) == STAGES and len(set(pids.values())) == 6
    # No GPU here: the GPU worker refuses to start, the switch is logged, the CPU worker answers.
    assert pipeline.find("stage_start_failed", stage="transcribe_gpu", exit_code=ExitCode.NO_GPU, level="info")
    assert not pipeline.find("gpu_worker_failover", level="warning")  # a CPU-only machine's normal case
    assert pipeline.find("worker_switched", to_worker="transcribe_cpu", level="info")  # the first routing
    assert pipeline.find("gpu_worker_failover", to="transcribe_cpu")
    assert not pipeline.find("spare_spawned", stage_name="transcribe_gpu")  # spares stand only behind healthy stages
    printed = [json.loads(line) for line in pipeline.stdout_lines]
    assert len(printed) == 4 and {p["worker"] for p in printed} == {"transcribe_cpu"}
    heard = " ".join(p["text"] for p in printed)
    assert keyword_hits(["maintenant", "ligne", "conférence", "pleine", "occupées", "numéro"], heard) >= 5
    assert [t.text for t in pipeline.subscriber.transcripts()] == [p["text"] for p in printed]
    for t in pipeline.subscriber.transcripts():
        assert t.language == "fr" and t.model_used == "base" and t.device == "cpu" and t.segments and t.source == "file"
        assert 0 < t.rtf < 2 and t.t_published_wall_s >= t.t_closed_wall_s
    # The 1 s pauses end each sentence: its final was decoded during the closing silence.
    assert pipeline.find("utterance_transcribed", speculated=True)
    # The garbage was logged and dropped; neither stage died for it.
    assert not pipeline.find("stage_failed", stage_name="vad") and not pipeline.find("stage_failed", stage_name="sink")


def make_bad_input_folder(folder: Path) -> None:
    folder.mkdir()
    (folder / "a-corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + os.urandom(200))
    (folder / "b-empty.wav").write_bytes(b"")
    speech, rate = soundfile.read(AUDIO / "fr-agent-loginok.wav", dtype="float32")
    resampled = soxr.resample(speech, rate, 44100)
    soundfile.write(folder / "c-stereo-44k.flac", np.stack([resampled, resampled * 0.8], axis=1), 44100)
    (folder / "d-conf-full.wav").write_bytes((AUDIO / "fr-conf-full.wav").read_bytes())


def test_folder_with_corrupt_empty_and_44k_stereo_files(run_dir, start_pipeline, tmp_path):
    folder = tmp_path / "inputs"
    make_bad_input_folder(folder)
    pipeline = start_pipeline(pipeline_config(run_dir), "--source", str(folder), "--fast")
    assert pipeline.wait_exit() == 0, pipeline.log_tail()
    rejected = {Path(e["detail"].split(":")[0]).name: e["reason"] for e in pipeline.find("audio_file_rejected")}
    assert rejected == {"a-corrupt.wav": "undecodable", "b-empty.wav": "empty"}
    texts = [t.text.lower() for t in pipeline.subscriber.transcripts()]
    assert len(texts) == 2
    assert keyword_hits(["vous", "êtes", "maintenant", "ligne"], texts[0]) >= 3
    assert keyword_hits(["cette", "conférence", "est", "pleine"], texts[1]) >= 3


def test_cpu_worker_sigkilled_mid_stream_is_restarted_and_no_utterance_is_lost(run_dir, start_pipeline):
    pipeline = start_pipeline(pipeline_config(run_dir, transcribe={"gpu": {"enabled": False}}), "--source", str(AUDIO))
    first = wait_until(lambda: pipeline.subscriber.transcripts(), 90, what="first transcript")
    victim = pipeline.stage_pids()["transcribe_cpu"]
    os.kill(victim, signal.SIGKILL)
    assert len(first) < 4  # killed mid-stream, with utterances still to come
    assert pipeline.wait_exit() == 0, pipeline.log_tail()
    assert pipeline.find("stage_failed", stage_name="transcribe_cpu", reason="signal_9")
    assert pipeline.stage_pids()["transcribe_cpu"] != victim
    transcripts = pipeline.subscriber.transcripts()
    ids = [t.utt_id for t in transcripts]
    assert len(ids) == 4 and len(set(ids)) == 4, [t.text for t in transcripts]
    heard = " ".join(t.text for t in transcripts)
    for keywords in (["maintenant", "ligne"], ["lignes", "occupées"], ["vérifier", "numéro"], ["conférence", "pleine"]):
        assert keyword_hits(keywords, heard) == 2, heard


def test_killed_stages_are_replaced_by_their_preloaded_spares_and_a_killed_spare_is_remade(run_dir, start_pipeline):
    cfg = pipeline_config(run_dir, transcribe={"gpu": {"enabled": False}})
    pipeline = start_pipeline(cfg, "--source", str(AUDIO), "--keep-running")
    for stage in ("vad", "sink", "transcribe_cpu", "capture"):
        pipeline.wait_event("spare_ready", stage_name=stage, timeout_s=90)
    for stage in ("vad", "sink", "transcribe_cpu"):
        victim, spare = pipeline.stage_pids()[stage], pipeline.spare_pids()[stage]
        os.kill(victim, signal.SIGKILL)
        promoted = pipeline.wait_event("spare_promoted", stage_name=stage, timeout_s=30)
        assert (promoted["pid"], promoted["replaces"]) == (spare, victim)
        pipeline.wait_event("stage_up", stage_name=stage, pid=spare, timeout_s=30)
        pipeline.wait_event("spare_activated", stage=stage, pid=spare, timeout_s=5)
    capture, spare = pipeline.stage_pids()["capture"], pipeline.spare_pids()["capture"]
    os.kill(spare, signal.SIGKILL)  # a dead spare interrupts nothing and is made again
    pipeline.wait_event("spare_failed", stage_name="capture", pid=spare, timeout_s=30)
    wait_until(lambda: pipeline.spare_pids()["capture"] != spare, 30, what="a new capture spare")
    pipeline.wait_event("source_drained", timeout_s=90)
    # Every utterance the VAD closed got exactly one transcript (or was dropped as non-speech); the
    # one still being spoken when the VAD was killed, if any, died with it (see README).
    closed = {e["utt_id"] for e in pipeline.find("utterance_closed")}
    non_speech = {e["utt_id"] for e in pipeline.find("non_speech_dropped")}
    ids = [t.utt_id for t in pipeline.subscriber.transcripts()]
    assert len(ids) == len(set(ids)) and set(ids) == closed - non_speech and len(ids) >= 3, pipeline.log_tail()
    assert pipeline.stage_pids()["capture"] == capture and not pipeline.find("stage_failed", stage_name="capture")


def test_with_two_spares_a_second_crash_while_the_new_spare_preloads_is_repaired_by_the_other(run_dir, start_pipeline):
    cfg = pipeline_config(run_dir, transcribe={"gpu": {"enabled": False}},
                          supervisor={"spares": ["vad"], "spares_per_stage": 2})
    pipeline = start_pipeline(cfg, "--source", str(AUDIO), "--keep-running")
    wait_until(lambda: len(pipeline.find("spare_ready", stage_name="vad")) == 2, 90, what="two VAD spares ready")
    first, second = pipeline.all_spare_pids()["vad"]
    os.kill(pipeline.stage_pids()["vad"], signal.SIGKILL)
    pipeline.wait_event("stage_up", stage_name="vad", pid=first, timeout_s=30)  # the oldest ready spare first
    wait_until(lambda: len(pipeline.find("spare_spawned", stage_name="vad")) == 3, 30, what="a spare refilling the slot")
    os.kill(first, signal.SIGKILL)  # before the refill has preloaded: the other ready spare steps in
    promoted = pipeline.wait_event("spare_promoted", stage_name="vad", replaces=first, timeout_s=30)
    assert promoted["pid"] == second  # standing by, and older than the refill even if that is ready too
    pipeline.wait_event("stage_up", stage_name="vad", pid=second, timeout_s=30)
    pipeline.wait_event("spare_activated", stage="vad", pid=second, timeout_s=5)
    assert len(pipeline.find("stage_spawned", stage_name="vad")) == 1  # never a cold start


def test_sigstopped_worker_is_found_hung_by_its_heartbeat_replaced_and_its_work_resent(run_dir, start_pipeline):
    pipeline = start_pipeline(pipeline_config(run_dir, transcribe={"gpu": {"enabled": False}}), "--source", str(AUDIO))
    wait_until(lambda: pipeline.subscriber.transcripts(), 90, what="first transcript")
    victim = pipeline.stage_pids()["transcribe_cpu"]
    os.kill(victim, signal.SIGSTOP)  # alive, but silent: only the missing heartbeats tell
    hung = pipeline.wait_event("stage_hung", stage_name="transcribe_cpu", timeout_s=30)
    assert hung["reason"] == "heartbeat_missed" and hung["pid"] == victim
    wait_until(lambda: not pid_alive(victim), 10, what="the hung worker to be killed")
    assert pipeline.wait_exit() == 0, pipeline.log_tail()
    ids = [t.utt_id for t in pipeline.subscriber.transcripts()]
    assert len(ids) == 4 and len(set(ids)) == 4, pipeline.log_tail()


def test_sigterm_stops_every_stage_and_a_sigkilled_supervisor_nobody_restarts_leaves_no_orphans(
        run_dir, start_pipeline):
    cfg = pipeline_config(run_dir, transcribe={"gpu": {"enabled": False}})
    pipeline = start_pipeline(cfg, "--source", str(AUDIO))
    for stage in ("sink", "vad", "capture", "transcribe_cpu"):
        pipeline.wait_event("stage_up", stage_name=stage, timeout_s=90)
    pids = pipeline.stage_pids()
    pipeline.proc.send_signal(signal.SIGTERM)
    assert pipeline.wait_exit(60) == 0
    assert not [name for name, pid in pids.items() if pid_alive(pid)]

    # Stages outlive a dead supervisor for orphan_grace_s (for its restart to adopt them), then exit.
    second = start_pipeline({**cfg, "run_dir": str(run_dir / "again"),
                             "supervisor": {**cfg["supervisor"], "orphan_grace_s": 1}}, "--source", str(AUDIO))
    for stage in ("sink", "vad", "capture", "transcribe_cpu"):
        second.wait_event("stage_up", stage_name=stage, timeout_s=90)
    pids = second.stage_pids()
    second.proc.kill()
    wait_until(lambda: not any(pid_alive(pid) for pid in pids.values()), 10, what="stages to notice and exit")
