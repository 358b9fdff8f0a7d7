"""The original request's microphone validation, through a real audio server.

A private PulseAudio server gets a virtual microphone; `python supervisor.py` listens to it through
PortAudio and sounddevice exactly as on a laptop; real recorded French sentences are played into
it with paplay, and a LUXA-style subscriber checks what comes out on `transcript` and
`transcript.partial`. Skipped, with PulseAudio's reason, only when the server cannot start.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile

from pipeline.harness.pipeline_process import ROOT, PipelineProcess, pipeline_config
from pipeline.harness.pulse import PulseServer
from pipeline.harness.scrape import samples, value
from pipeline.harness.speech import speech_end_s
from pipeline.harness.waiting import wait_until
from pipeline.testmode import keyword_hits

pytestmark = pytest.mark.slow
AUDIO = ROOT / "tests" / "data" / "audio"
SENTENCES = [  # (file, keywords: at least 3 of 4 must come back)
    ("fr-check-number-dial-again.wav", ["veuillez", "vérifier", "numéro", "nouveau"]),
    ("fr-all-circuits-busy-now.wav", ["toutes", "lignes", "occupées", "instant"]),
    ("fr-agent-loginok.wav", ["vous", "êtes", "maintenant", "ligne"]),
    ("fr-conf-full.wav", ["cette", "conférence", "est", "pleine"]),
]


def started_server(rooms: tuple[str, ...] = ()):
    server = PulseServer(rooms)
    try:
        server.start()
    except RuntimeError as err:
        server.stop()
        pytest.skip(f"PulseAudio cannot start here: {err}")
    return server


@pytest.fixture
def pulse():
    server = started_server()
    yield server
    server.stop()


@pytest.fixture
def rooms():
    """Two microphones, `kitchen` and `salon`, as PortAudio input devices of those names."""
    server = started_server(("kitchen", "salon"))
    yield server
    server.stop()


def silence_and_noise(path: Path) -> Path:
    rng = np.random.default_rng(3)
    noise = (0.03 * rng.standard_normal(3 * 16000)).astype(np.float32)
    soundfile.write(path, np.concatenate([np.zeros(3 * 16000, dtype=np.float32), noise]), 16000)
    return path


def play_and_wait(pulse: PulseServer, pipeline: PipelineProcess, wav: Path) -> tuple[float, object]:
    """Play one sentence; returns (end of speech, epoch s) and its final transcript."""
    before = len(pipeline.subscriber.transcripts())
    started = time.time()
    pulse.play(wav)
    finals = wait_until(lambda: pipeline.subscriber.transcripts()[before:], 30, what=f"final transcript of {wav.name}")
    return started + speech_end_s(wav), finals[0]


def test_live_microphone_french_sentences_partials_and_silence(pulse, run_dir, start_pipeline, tmp_path):
    cfg = pipeline_config(run_dir, transcribe={"gpu": {"enabled": False}})
    pipeline = start_pipeline(cfg, env=pulse.env)
    wait_until(lambda: pipeline.find("worker_switched", to_worker="transcribe_cpu"), 90, what="worker routed")
    pipeline.wait_event("stage_up", stage_name="capture")

    results = []
    for name, keywords in SENTENCES[:2]:
        results.append((keywords, *play_and_wait(pulse, pipeline, AUDIO / name)))
    quiet_from = len(pipeline.subscriber.frames)
    pulse.play(silence_and_noise(tmp_path / "quiet.wav"))
    for name, keywords in SENTENCES[2:]:
        results.append((keywords, *play_and_wait(pulse, pipeline, AUDIO / name)))

    # Nothing at all (not even interim text) between the silence + noise and the next sentence.
    finals = pipeline.subscriber.transcripts()
    assert len(finals) == len(SENTENCES), [t.text for t in finals]
    assert {t.utt_id for t in pipeline.subscriber.frames[quiet_from:]} == {results[2][2].utt_id, results[3][2].utt_id}
    for keywords, _, final in results:
        assert keyword_hits(keywords, final.text) >= 3, (keywords, final.text)

    partials = pipeline.subscriber.partials()
    assert partials, "no interim transcript was published"
    for p in partials:
        final = next(t for t in finals if t.utt_id == p.utt_id)
        assert p.t_published_wall_s < final.t_published_wall_s
        assert pipeline.subscriber.frames.index(p) < pipeline.subscriber.frames.index(final)

    with urllib.request.urlopen(f"{pipeline.metrics_url()}/metrics", timeout=10) as reply:
        m = samples(reply.read().decode())
    assert value(m, "stt_transcriptions_total", outcome="ok") == len(SENTENCES)
    assert value(m, "stt_errors_total") == 0 and value(m, "stt_frames_malformed_total") == 0
    assert value(m, "stt_transcripts_published_total") == len(SENTENCES)

    latencies_ms = [(final.t_published_wall_s - end) * 1000 for _, end, final in results]
    report = {"end_of_speech_to_final_ms": [round(x) for x in latencies_ms],
              "p50_ms": round(statistics.median(latencies_ms)), "partials": len(partials)}
    print(json.dumps(report))
    # Causality, not speed (that is bench.live_latency's job): no final before its speech ended.
    assert all(x > 0 for x in latencies_ms), report


def test_two_microphones_get_their_own_transcripts_and_a_stalled_room_never_holds_up_the_other(
        rooms, run_dir, start_pipeline):
    # A patient hang detector: the VAD stopped below stays stopped, as a wedged process would.
    cfg = pipeline_config(run_dir, audio={"device": ["kitchen", "salon"]}, transcribe={"gpu": {"enabled": False}},
                          supervisor={"spares": [], "heartbeat_liveness": 600})
    pipeline = start_pipeline(cfg, env=rooms.env)
    wait_until(lambda: pipeline.find("worker_switched", to_worker="transcribe_cpu"), 90, what="worker routed")
    for stage in ("capture", "capture.1", "vad", "vad.1"):
        pipeline.wait_event("stage_up", stage_name=stage)

    def finals_from(source: str) -> list:
        return [t for t in pipeline.subscriber.transcripts() if t.source == source]

    # Both rooms speak at once: two sentences, each transcribed once and labelled with its room.
    (kitchen_wav, kitchen_words), (salon_wav, salon_words) = SENTENCES[0], SENTENCES[1]
    players = [threading.Thread(target=rooms.play, args=(AUDIO / kitchen_wav, "kitchen")),
               threading.Thread(target=rooms.play, args=(AUDIO / salon_wav, "salon"))]
    for player in players:
        player.start()
    for player in players:
        player.join()
    wait_until(lambda: finals_from("mic:kitchen") and finals_from("mic:salon"), 60, what="a final from each room")
    [kitchen], [salon] = finals_from("mic:kitchen"), finals_from("mic:salon")
    assert keyword_hits(kitchen_words, kitchen.text) >= 3 and keyword_hits(salon_words, salon.text) >= 3, (
        kitchen.text, salon.text)
    assert kitchen.utt_id != salon.utt_id

    # The salon's VAD wedged: the kitchen is still heard, and the salon again once it comes back.
    stalled = pipeline.stage_pids()["vad.1"]
    os.kill(stalled, signal.SIGSTOP)
    try:
        rooms.play(AUDIO / SENTENCES[2][0], "kitchen")
        wait_until(lambda: len(finals_from("mic:kitchen")) == 2, 60, what="the kitchen heard while the salon is stalled")
        assert keyword_hits(SENTENCES[2][1], finals_from("mic:kitchen")[1].text) >= 3
        assert len(finals_from("mic:salon")) == 1
    finally:
        os.kill(stalled, signal.SIGCONT)
    rooms.play(AUDIO / SENTENCES[3][0], "salon")
    wait_until(lambda: len(finals_from("mic:salon")) == 2, 60, what="the salon heard again")
    assert keyword_hits(SENTENCES[3][1], finals_from("mic:salon")[1].text) >= 3
    assert pipeline.stage_pids()["vad.1"] == stalled and len({t.utt_id for t in pipeline.subscriber.transcripts()}) == 4
