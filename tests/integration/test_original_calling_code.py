"""LUXA's existing code calls the manager as the original request wrote it; so does this test.

Recorded French speech stands in for the original test's live microphone. The `stt` section uses
the original request's own keys, and its chain names models that cannot be had offline (`small`,
`tiny`): each is skipped with a logged load error, and `base` answers.
"""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
import soundfile

from pipeline.audio import load_audio
from pipeline.harness.pipeline_process import ROOT
from pipeline.stt import RobustSTTManager, VADManager
from pipeline.testmode import keyword_hits

pytestmark = pytest.mark.slow
AUDIO = ROOT / "tests" / "data" / "audio"


def original_config(cache_dir) -> dict:
    return {
        "stt": {"use_gpu": True, "fallback_chain": ["small", "base", "tiny"], "use_vad": True,
                "model_cache_dir": str(cache_dir)},
        "vad": {"threshold": 0.5, "min_silence_ms": 400},
    }


def two_sentences_wav() -> tuple[bytes, float, float]:
    """Two prompts with 1.5 s of silence between them, as WAV bytes; where the second starts and
    the whole length (s)."""
    first = load_audio(AUDIO / "fr-agent-loginok.wav", 60)
    second = load_audio(AUDIO / "fr-conf-full.wav", 60)
    pause = np.zeros(24000, dtype=np.float32)
    out = io.BytesIO()
    clip = np.concatenate([pause[:8000], first, pause, second, pause[:8000]])
    soundfile.write(out, clip, 16000, format="WAV", subtype="PCM_16")
    return out.getvalue(), (8000 + first.size + pause.size) / 16000, clip.size / 16000


def silence_wav() -> bytes:
    out = io.BytesIO()
    soundfile.write(out, np.zeros(3 * 16000, dtype=np.float32), 16000, format="WAV", subtype="PCM_16")
    return out.getvalue()


def test_the_original_calling_code_works_as_written(tmp_path, log_capture):
    config = original_config(tmp_path / "models")
    stt_manager = RobustSTTManager(config["stt"], vad_manager=VADManager(config["vad"]))
    asyncio.run(stt_manager.initialize())
    try:
        audio_bytes, second_starts_s, duration_s = two_sentences_wav()
        result = asyncio.run(stt_manager.transcribe_audio(audio_bytes, language="fr"))
        silent = asyncio.run(stt_manager.transcribe_audio(silence_wav(), language="fr"))
        metrics = stt_manager.get_metrics()
    finally:
        asyncio.run(stt_manager.cleanup())

    assert {"text", "segments", "processing_time", "device", "model_used", "metrics"} <= set(result)
    assert {"audio_duration", "rtf"} <= set(result["metrics"])
    assert keyword_hits(["vous", "êtes", "maintenant", "ligne"], result["text"]) >= 3, result["text"]
    assert keyword_hits(["cette", "conférence", "est", "pleine"], result["text"]) >= 3, result["text"]
    # Only the speech was transcribed, segment by segment, and joined on the clip's time axis.
    assert result["segments"][-1]["start"] >= second_starts_s - 0.6, result["segments"]
    assert result["model_used"] == "base" and result["device"] == "cpu"
    assert result["processing_time"] > 0 and result["metrics"]["audio_duration"] == pytest.approx(duration_s, abs=0.01)
    assert silent["text"] == "" and silent["is_speech"] is False

    failed = {e["model"] for e in log_capture.entries if e["event"] == "model_load_failed"}
    assert failed == {"small", "tiny"}
    assert (tmp_path / "models").is_dir()  # model_cache_dir is where `base` was assembled
    assert metrics["transcriptions"] == 2 and metrics["errors"] == 0 and metrics["avg_latency"] > 0
    assert metrics["device"] == "cpu" and metrics["models_loaded"] == ["base@cpu"] and metrics["vad_enabled"] is True
