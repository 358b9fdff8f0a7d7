"""The Wyoming front door end to end: real supervisor and stages, real TCP clients (the `wyoming`
package, as Home Assistant uses it), Whisper `base` on real French speech, no microphone."""

from __future__ import annotations

import asyncio
import json
import socket

import numpy as np
import pytest
import soundfile
import soxr

from pipeline.config import FAULTS_ALLOWED_ENV
from pipeline.harness.pipeline_process import ROOT, pipeline_config
from pipeline.harness.waiting import wait_until
from pipeline.harness.wyoming_client import describe, pcm16, transcribe
from pipeline.testmode import keyword_hits

pytestmark = pytest.mark.slow
AUDIO = ROOT / "tests" / "data" / "audio"
STREAMING = ["transcript-start", "transcript-chunk", "transcript", "transcript-stop"]


def speech(name: str) -> tuple[np.ndarray, int]:
    samples, rate = soundfile.read(AUDIO / f"{name}.wav", dtype="float32")
    return samples, rate


def pcm24_stereo_48k(samples: np.ndarray, rate: int) -> bytes:
    """The same speech as a 48 kHz stereo 24-bit stream: the conversion path, not the 16 kHz shortcut."""
    up = soxr.resample(samples, rate, 48000)
    ints = (np.clip(np.stack([up, up], axis=1), -1, 1) * 8388607).astype("<i4").reshape(-1)
    return b"".join(int(v).to_bytes(3, "little", signed=True) for v in ints)


@pytest.fixture
def wyoming(run_dir, start_pipeline):
    """A pipeline without a microphone, serving Wyoming on a port the server picked."""
    cfg = pipeline_config(run_dir, audio={"device": "none"}, servers={"wyoming": "tcp://127.0.0.1:0"},
                          supervisor={"spares": []})
    pipeline = start_pipeline(cfg)
    listening = pipeline.wait_event("wyoming_listening", timeout_s=120)
    return pipeline, listening["port"]


def test_clients_at_once_get_french_transcripts_with_streaming_events(wyoming):
    pipeline, port = wyoming
    info = asyncio.run(describe(port))
    program = info.asr[0]
    assert program.supports_transcript_streaming and program.models[0].name == "base"
    assert program.models[0].languages[0] == "fr"
    assert "capture" not in pipeline.stage_pids()  # audio.device: none

    conf, conf_rate = speech("fr-conf-full")
    busy, busy_rate = speech("fr-all-circuits-busy-now")
    again, again_rate = speech("fr-check-number-dial-again")

    async def three_clients():
        return await asyncio.gather(
            transcribe(port, pcm16(conf), conf_rate),
            transcribe(port, pcm24_stereo_48k(busy, busy_rate), 48000, width=3, channels=2, language="fr"),
            transcribe(port, pcm16(np.concatenate([again, np.zeros(again_rate)])), again_rate, realtime=True))

    results = asyncio.run(three_clients())
    for result, keywords in zip(results, (["cette", "conférence", "est", "pleine"],
                                          ["toutes", "lignes", "sont", "occupées"],
                                          ["vérifier", "numéro", "composer", "nouveau"])):
        assert result.types == STREAMING, result.events
        assert keyword_hits(keywords, result.text) >= 3, result.text
        chunks = "".join(e.data["text"] for e in result.events if e.type == "transcript-chunk")
        assert chunks == result.text
    # A real-time client alone (the worker free: while it decodes the others' turns, a copy may wait
    # past audio-stop) pauses a second before audio-stop: its answer is decoded in that pause.
    alone = asyncio.run(transcribe(port, pcm16(np.concatenate([again, np.zeros(again_rate)])), again_rate,
                                   realtime=True))
    assert keyword_hits(["vérifier", "numéro", "composer", "nouveau"], alone.text) >= 3, alone.text
    realtime = pipeline.wait_event("utterance_transcribed", speculated=True)
    assert realtime["utt_id"].startswith("wy")
    # Published for the rest of LUXA too, each labelled with where it came from.
    published = pipeline.subscriber
    wait_until(lambda: len(published.transcripts()) == 4, 30, what="the four finals at a subscriber")
    sources = [t.source for t in published.transcripts()]
    assert len(set(sources)) == 4 and all(s.startswith("wyoming:127.0.0.1:") for s in sources)  # one per client


def test_silence_gets_an_empty_transcript_and_hostile_clients_an_error_without_stopping_the_stage(wyoming):
    pipeline, port = wyoming
    silent = asyncio.run(transcribe(port, pcm16(np.zeros(16000)), 16000))
    assert silent.types == ["transcript-start", "transcript", "transcript-stop"] and silent.text == ""  # no chunk
    wyoming_pid = pipeline.stage_pids()["wyoming"]

    for raw, code in ((b"not json\n", "malformed"),
                      (b'{"type": "audio-chunk", "payload_length": 999999999999}\n', "too_large"),
                      (b'{"type": "audio-start", "data": {"rate": 1, "width": 2, "channels": 1}}\n', "audio_format"),
                      (b'{"type": "transcribe", "data": {"language": "xx"}}\n', "language")):
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(raw)
            answer = sock.makefile("rb")
            header = json.loads(answer.readline())
            data = json.loads(answer.read(header["data_length"]))
        assert header["type"] == "error" and data["code"] == code, (raw, header, data)
        pipeline.wait_event("wyoming_client_error", reason=code)

    conf, rate = speech("fr-conf-full")
    after = asyncio.run(transcribe(port, pcm16(conf), rate))
    assert keyword_hits(["cette", "conférence", "est", "pleine"], after.text) >= 3
    assert pipeline.stage_pids()["wyoming"] == wyoming_pid


def test_a_turn_whose_worker_hangs_is_answered_by_its_replacement(run_dir, start_pipeline, monkeypatch):
    """The first final-quality model call of the run never returns: the supervisor replaces the
    worker (busy too long), the VAD sends the turn it holds again, the client gets its text."""
    monkeypatch.setenv(FAULTS_ALLOWED_ENV, "1")
    cfg = pipeline_config(run_dir, audio={"device": "none"}, servers={"wyoming": "tcp://127.0.0.1:0"},
                          transcribe={"gpu": {"enabled": False}, "inject_fault": "hang"}, supervisor={"max_busy_s": 5})
    pipeline = start_pipeline(cfg)
    port = pipeline.wait_event("wyoming_listening", timeout_s=120)["port"]
    conf, rate = speech("fr-conf-full")
    result = asyncio.run(transcribe(port, pcm16(conf), rate))
    assert keyword_hits(["cette", "conférence", "est", "pleine"], result.text) >= 3, pipeline.log_tail()
    assert len(pipeline.find("fault_injected")) == 1
    assert pipeline.find("stage_hung", stage_name="transcribe_cpu", reason="busy_too_long")
