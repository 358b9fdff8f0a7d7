"""One scrape of the supervisor's HTTP endpoint after real speech: every counter moved by the right amount."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from pipeline.audio import load_audio
from pipeline.harness.pipeline_process import ROOT, pipeline_config
from pipeline.harness.scrape import get, samples, value

pytestmark = pytest.mark.slow
AUDIO = ROOT / "tests" / "data" / "audio"


def make_broken_model(folder: Path) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.bin").write_bytes(b"\x00" * 4096)
    return folder


def test_scrape_after_real_speech_and_a_broken_first_model(run_dir, start_pipeline, tmp_path):
    broken = make_broken_model(tmp_path / "broken-model")
    # No speculative decodes: the exact counts below assume one decode per utterance.
    cfg = pipeline_config(run_dir, transcribe={"cpu": {"models": [str(broken), "base"]}},
                          models={"allowed_dirs": [str(tmp_path)]}, vad={"speculate_after_ms": 0})
    pipeline = start_pipeline(cfg, "--source", str(AUDIO), "--fast", "--keep-running")
    pipeline.wait_event("source_drained", timeout_s=120)
    pipeline.wait_event("spare_ready", stage_name="transcribe_cpu", timeout_s=60)  # it loads the chain too
    url = pipeline.find("metrics_serving")[0]["url"].rsplit("/", 1)[0]

    transcripts = pipeline.subscriber.transcripts()
    assert len(transcripts) == 4 and {t.model_used for t in transcripts} == {"base"}
    assert pipeline.find("model_load_failed", model=str(broken))

    status, body = get(f"{url}/metrics")
    assert status == 200
    m = samples(body.decode())
    files = sorted(AUDIO.glob("*.wav"))
    chunks = sum(math.ceil(load_audio(f, 60).size / 512) for f in files)
    assert value(m, "stt_frames_in_total", stage="vad", kind="audio_chunk") == chunks
    assert value(m, "stt_frames_out_total", stage="capture", kind="audio_chunk") == chunks
    assert value(m, "stt_frames_in_total", stage="vad", kind="capture_gap") == len(files) - 1
    assert value(m, "stt_utterances_total", stage="vad") == 4
    # Every window is either heard by Silero or below the silence floor (the files' digital silence).
    gated = value(m, "stt_vad_windows_gated_total", stage="vad")
    assert value(m, "stt_vad_seconds_count", stage="vad") + gated == chunks
    assert value(m, "stt_transcriptions_total", model="base", device="cpu", outcome="ok") == 4
    assert value(m, "stt_latency_seconds_count", model="base", device="cpu") == 4
    # Once per process that loaded the chain: the active CPU worker and its preloaded spare.
    assert value(m, "stt_errors_total", model=str(broken), device="cpu", error="load") == 2
    assert value(m, "stt_errors_total", model="base") == 0
    assert value(m, "stt_transcripts_published_total", stage="sink") == 4
    assert value(m, "stt_frames_malformed_total") == 0
    assert value(m, "stt_breaker_state", model="base", device="cpu") == 0
    assert value(m, "stt_active_worker", worker="transcribe_cpu") == 1
    assert value(m, "stt_active_worker", worker="transcribe_gpu") == 0
    assert value(m, "stt_queue_depth", stage="vad") == 0
    for stage in ("capture", "vad", "transcribe_cpu", "sink"):
        assert value(m, "stt_stage_up", stage=stage) == 1, stage
    assert value(m, "stt_stage_up", stage="transcribe_gpu") == 0
    assert value(m, "stt_models_loaded", stage="transcribe_cpu") == 1

    status, body = get(f"{url}/ready")
    health = json.loads(body)
    assert status == 200 and health["ready"] is True, health
    assert health["active_worker"] == "transcribe_cpu" and health["breakers"] == {"base@cpu": "closed"}
    assert health["stages"]["transcribe_gpu"] == "down" and 0 <= health["engine_answered_age_s"] < 60
    assert get(f"{url}/health")[0] == 200 and get(f"{url}/nope")[0] == 404
