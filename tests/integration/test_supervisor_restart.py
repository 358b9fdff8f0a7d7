"""Nothing said is lost to a crash: a VAD killed mid-utterance (capture replays the audio from its
committed offset), a supervisor SIGKILLed and started again on its run dir (as systemd's
Restart=on-failure would: it resumes the state its stages left instead of wiping it)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

from pipeline.harness.pipeline_process import ROOT, pid_alive, pipeline_config
from pipeline.harness.waiting import wait_until
from pipeline.rundir import leftover_state
from pipeline.testmode import keyword_hits

AUDIO = ROOT / "tests" / "data" / "audio"


def long_source(folder):
    """The four test prompts three times (~25 s at real-time pace): speech outlasts what the test does."""
    folder.mkdir()
    for round_ in range(3):
        for wav in sorted(AUDIO.glob("*.wav")):
            shutil.copy(wav, folder / f"{round_}-{wav.name}")
    return folder


def test_a_sigkilled_supervisor_restarted_on_its_run_dir_loses_and_repeats_no_closed_utterance(
        run_dir, start_pipeline, tmp_path):
    source = long_source(tmp_path / "source")
    # No spares and a patient hang detector: the stopped sink below stays the sink. A short orphan
    # grace: no supervisor adopts the first session's stages (see the next test), they exit.
    cfg = pipeline_config(run_dir, transcribe={"gpu": {"enabled": False}},
                          supervisor={"spares": [], "heartbeat_liveness": 600, "max_busy_s": 600, "orphan_grace_s": 1})
    first = start_pipeline(cfg, "--source", str(source))
    wait_until(lambda: first.subscriber.transcripts(), 120, what="a first transcript")
    pids = first.stage_pids()
    os.kill(pids["sink"], signal.SIGSTOP)  # nothing is published (or acknowledged) from here on
    closed = len(first.find("utterance_closed"))
    wait_until(lambda: len(first.find("utterance_closed")) > closed, 60, what="an utterance closed while nothing publishes")
    first.proc.kill()  # SIGKILL: no drain, no cleanup; the stages exit when nobody adopts them
    os.kill(pids["sink"], signal.SIGKILL)
    heard_first = {t.utt_id for t in first.subscriber.transcripts()}
    wait_until(lambda: not any(pid_alive(pid) for pid in pids.values()), 15, what="the first session's stages to exit")
    assert leftover_state(run_dir)["spooled"] >= 1

    second = start_pipeline(cfg, "--source", str(source))
    assert second.wait_exit(180) == 0, second.log_tail()
    resumed = second.find("state_resumed")
    assert resumed and resumed[0]["spooled"] >= 1 and resumed[0]["cursor"] == 1, second.log_tail()
    # The second session's subscriber catches up from the start of the history, which the crash kept:
    # it holds every final of both sessions, each once.
    published = [t.utt_id for t in second.subscriber.transcripts()]
    assert heard_first <= set(published)
    closed_ids = {e["utt_id"] for e in first.find("utterance_closed") + second.find("utterance_closed")}
    dropped = {e["utt_id"] for e in first.find("non_speech_dropped") + second.find("non_speech_dropped")}
    assert len(published) == len(set(published)), "a transcript was published twice"
    assert closed_ids - dropped == set(published), second.log_tail()
    assert not any(leftover_state(run_dir).values())  # a clean stop with nothing pending clears it


def test_a_sigkilled_supervisor_restarted_adopts_its_stages_which_never_stop_serving(run_dir, start_pipeline, tmp_path):
    source = long_source(tmp_path / "source")
    cfg = pipeline_config(run_dir, transcribe={"gpu": {"enabled": False}}, supervisor={"spares": ["vad"]})
    pipeline = start_pipeline(cfg, "--source", str(source))
    wait_until(lambda: pipeline.subscriber.transcripts() and pipeline.find("spare_ready"), 120,
               what="a first transcript and the VAD's spare preloaded")
    serving, spare = pipeline.stage_pids(), pipeline.spare_pids()["vad"]
    heard_before = len(pipeline.subscriber.transcripts())
    pipeline.proc.kill()
    pipeline.restart_after_crash()  # as systemd would (KillMode=process): the stages were left running
    assert pipeline.wait_exit(180) == 0, pipeline.log_tail()
    adopted = {(e["stage_name"], e["pid"]) for e in pipeline.find("stage_adopted")}
    assert adopted == {*serving.items(), ("vad", spare)}, pipeline.log_tail()
    # Nothing started again (no model loaded twice), nothing failed, the route never moved.
    assert pipeline.stage_pids() == serving and pipeline.spare_pids() == {"vad": spare}
    assert not pipeline.find("stage_failed") and not pipeline.find("stage_unowned")
    assert len(pipeline.find("worker_switched")) == 1
    published = [t.utt_id for t in pipeline.subscriber.transcripts()]
    closed = {e["utt_id"] for e in pipeline.find("utterance_closed")} - {
        e["utt_id"] for e in pipeline.find("non_speech_dropped")}
    assert len(published) == len(set(published)) and set(published) == closed, pipeline.log_tail()
    assert len(published) > heard_before  # the adopted stages went on transcribing


def test_a_second_supervisor_on_a_live_run_dir_is_refused(run_dir, start_pipeline):
    first = start_pipeline(pipeline_config(run_dir, transcribe={"gpu": {"enabled": False}}),
                           "--source", str(AUDIO), "--keep-running")
    first.wait_event("stage_up", stage_name="sink", timeout_s=90)
    config = run_dir / "config.resolved.json"  # the first session's own config, same run dir
    second = subprocess.run([sys.executable, "supervisor.py", "--config", str(config)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 78
    assert f"another supervisor (pid {first.proc.pid})" in second.stderr
    assert first.proc.poll() is None and not first.find("stage_failed")


REFERENCES = {  # tests/data/audio/ATTRIBUTION.md
    "fr-agent-loginok.wav": "vous êtes maintenant en ligne",
    "fr-all-circuits-busy-now.wav": "toutes les lignes sont occupées pour l'instant",
    "fr-check-number-dial-again.wav": "veuillez vérifier le numéro et composer de nouveau",
    "fr-conf-full.wav": "cette conférence est pleine",
}


def test_a_vad_sigkilled_while_someone_speaks_loses_nothing_of_what_was_said(run_dir, start_pipeline):
    pipeline = start_pipeline(pipeline_config(run_dir, transcribe={"gpu": {"enabled": False}}), "--source", str(AUDIO))
    # The VAD's own word that an utterance is open (not a worker's interim text, which a slow
    # machine may never finish before the close): it dies in the middle of speech.
    def still_open():
        closed = {e["utt_id"] for e in pipeline.find("utterance_closed")}
        return [e["utt_id"] for e in pipeline.find("utterance_opened") if e["utt_id"] not in closed]
    speaking = wait_until(still_open, 120, what="an utterance being spoken")[-1]
    victim = pipeline.stage_pids()["vad"]
    os.kill(victim, signal.SIGKILL)
    assert pipeline.wait_exit(180) == 0, pipeline.log_tail()
    assert pipeline.find("stage_failed", stage_name="vad", reason="signal_9")
    assert pipeline.find("replay_started"), pipeline.log_tail()
    assert not pipeline.find("utterance_closed", utt_id=speaking)  # it died with that utterance open
    texts = [t.text for t in pipeline.subscriber.transcripts()]
    for reference in REFERENCES.values():  # every sentence said, in exactly one final
        matching = [t for t in texts if keyword_hits(reference.split(), t) >= len(reference.split()) // 2 + 1]
        assert len(matching) == 1, (reference, texts, pipeline.log_tail())
    assert len(texts) == len(REFERENCES), texts
