"""A model call that never returns, or raises, in a real worker process: detected, the worker
replaced, the utterance sent again (transcribe.inject_fault, allowed by LUXA_ALLOW_FAULT_INJECTION)."""

from __future__ import annotations

from pipeline.config import FAULTS_ALLOWED_ENV
from pipeline.harness.pipeline_process import ROOT, pipeline_config
from pipeline.testmode import keyword_hits

AUDIO = ROOT / "tests" / "data" / "audio"
KEYWORDS = (["maintenant", "ligne"], ["lignes", "occupées"], ["vérifier", "numéro"], ["conférence", "pleine"])


def run_with_fault(run_dir, start_pipeline, monkeypatch, kind: str):
    monkeypatch.setenv(FAULTS_ALLOWED_ENV, "1")  # the harness and every stage validate the config
    cfg = pipeline_config(run_dir, transcribe={"gpu": {"enabled": False}, "inject_fault": kind},
                          supervisor={"max_busy_s": 5})
    pipeline = start_pipeline(cfg, "--source", str(AUDIO))
    assert pipeline.wait_exit(180) == 0, pipeline.log_tail()
    assert len(pipeline.find("fault_injected")) == 1  # once per run dir: the replacement does not fire
    texts = [t.text for t in pipeline.subscriber.transcripts()]
    assert len(texts) == 4 and len({t.utt_id for t in pipeline.subscriber.transcripts()}) == 4, texts
    heard = " ".join(texts)
    assert all(keyword_hits(k, heard) == 2 for k in KEYWORDS), heard
    return pipeline


def test_an_endless_model_call_is_found_busy_too_long_the_worker_replaced_and_nothing_lost(
        run_dir, start_pipeline, monkeypatch):
    pipeline = run_with_fault(run_dir, start_pipeline, monkeypatch, "hang")
    hung = pipeline.find("stage_hung", stage_name="transcribe_cpu")
    assert hung and hung[0]["reason"] == "busy_too_long", pipeline.log_tail()


def test_a_model_that_raises_fails_the_worker_which_is_replaced_and_nothing_lost(run_dir, start_pipeline, monkeypatch):
    pipeline = run_with_fault(run_dir, start_pipeline, monkeypatch, "raise")
    assert pipeline.find("model_failed", model="base")
    assert pipeline.find("stage_failed", stage_name="transcribe_cpu"), pipeline.log_tail()
