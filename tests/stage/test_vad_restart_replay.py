"""A VAD killed mid-utterance loses nothing: its successor replays the audio from the committed offset.

CaptureStage (a real file source) and VadStage in-process, frames passed by hand as the runner
would: capture's output to the VAD's `audio` port, the VAD's `replay` output to capture. Speech is
a loud stretch between silences, and the speech probability follows the loudness, so the
utterance found depends on the audio, not on how many windows each VAD saw.
"""

from __future__ import annotations

import numpy as np
import soundfile

from pipeline import frames
from pipeline.config import AudioConfig, VadConfig
from pipeline.harness.stage_driver import StageDriver, of_kind
from pipeline.runner import CONTROL
from stages.capture import CaptureStage
from stages.vad import VadStage

RATE = 16000


def loudness_vad(window, rate) -> float:
    return 0.9 if float(np.sqrt(np.mean(window * window))) > 0.05 else 0.05


def speech_file(path):
    rng = np.random.default_rng(3)
    quiet = rng.normal(0, 0.001, RATE).astype(np.float32)  # room noise, above the silence floor
    loud = rng.normal(0, 0.3, int(2.5 * RATE)).astype(np.float32)
    soundfile.write(path, np.concatenate([quiet, loud, quiet, quiet]), RATE, subtype="FLOAT")


def a_vad(run_dir) -> StageDriver:
    stage = VadStage(VadConfig(endpoint="silence", partial_interval_ms=0, speculate_after_ms=0), RATE, run_dir,
                     ["transcribe_cpu"], prob_fn=loudness_vad)
    driver = StageDriver(stage)
    driver.send(CONTROL, frames.Route(active="transcribe_cpu", epoch=1))
    return driver


def capture_frames(tmp_path, run_dir, replay_s: float = 60.0):
    speech_file(tmp_path / "speech.wav")
    capture = CaptureStage(AudioConfig(source=str(tmp_path / "speech.wav"), pace="fast", replay_s=replay_s), run_dir)
    driver = StageDriver(capture)
    sent = []
    while not capture.exhausted:
        sent += [f for _, f in driver._emitted(capture.produce(0.05))]
    return driver, [f for f in sent if isinstance(f, frames.AudioChunk)]


def finals(outputs) -> list[frames.Utterance]:
    return [u for u in of_kind(outputs, frames.Utterance, "transcribe_cpu") if not u.speculative]


def clean_reference(tmp_path):
    """A run dir for the test, the file's chunks, and the utterance a VAD nobody killed finds in them."""
    clean_dir, run_dir = tmp_path / "clean", tmp_path / "run"
    clean_dir.mkdir()
    run_dir.mkdir()
    _, chunks = capture_frames(tmp_path, tmp_path / "unused")
    clean = a_vad(clean_dir)
    for chunk in chunks:
        clean.send("audio", chunk)
    [reference] = finals(clean.outputs)
    return run_dir, chunks, reference


def test_the_successor_of_a_vad_killed_mid_utterance_rebuilds_the_whole_utterance(tmp_path):
    run_dir, chunks, reference = clean_reference(tmp_path)

    capture, _ = capture_frames(tmp_path, run_dir)
    first = a_vad(run_dir)
    middle = int(2.2 * RATE / 512)  # 1.2 s into the 2.5 s of speech
    for chunk in chunks[:middle]:
        first.send("audio", chunk)
    assert not finals(first.outputs)  # SIGKILL now: the utterance is open, nothing closed

    second = a_vad(run_dir)
    for chunk in chunks[middle:middle + 5]:  # live audio reaching it before the replay: dropped
        second.send("audio", chunk)
    [(port, request)] = [(p, f) for p, f in second.tick(0) if isinstance(f, frames.ReplayRequest)]
    assert port == "replay" and request.from_seq <= chunks[int(0.5 * RATE / 512)].seq  # pre-roll included
    replayed = capture.send("replay", request)
    start = replayed[0][1]
    assert isinstance(start, frames.ReplayStart) and start.first_seq == request.from_seq
    for _, frame in replayed:
        second.send("audio", frame)
    second.send("audio", start)  # a second answer to the same request: its frames are old
    for _, frame in replayed[1:]:
        second.send("audio", frame)
    [rebuilt] = finals(second.outputs)
    assert rebuilt.pcm == reference.pcm  # the same audio, sample for sample
    assert not any(isinstance(f, frames.ReplayRequest) for _, f in second.tick(0))  # asked once, answered


def test_a_vad_down_longer_than_the_replay_buffer_gets_what_is_left_and_logs_the_hole(tmp_path):
    capture, chunks = capture_frames(tmp_path, tmp_path, replay_s=1.0)
    start, *replayed = [f for _, f in capture.send("replay", frames.ReplayRequest(from_seq=1))]
    kept = int(1000 / 32) + 1  # the last 1 s of audio (31 chunks), then the end-of-stream mark
    assert [f.seq for f in replayed] == list(range(start.first_seq, start.first_seq + kept))
    assert isinstance(replayed[-1], frames.EndOfStream) and start.first_seq > 1  # the hole is logged
    assert [f.pcm for f in replayed[:-1]] == [c.pcm for c in chunks[-(kept - 1):]]


def test_frames_of_a_restarted_capture_that_overtake_the_dead_ones_are_put_back_in_order(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    _, chunks = capture_frames(tmp_path, tmp_path / "unused")
    clean, vad = a_vad(tmp_path / "unused"), a_vad(run_dir)
    for chunk in chunks:
        clean.send("audio", chunk)
    # The dead capture's last 40 frames still queued, fair-queued 1:1 with its successor's first ones.
    cut = len(chunks) - 80
    old, new = chunks[cut:cut + 40], chunks[cut + 40:]
    for chunk in chunks[:cut]:
        vad.send("audio", chunk)
    for pair in zip(new, old):
        for chunk in pair:
            vad.send("audio", chunk)
    for chunk in new[len(old):]:
        vad.send("audio", chunk)
    assert [u.pcm for u in finals(vad.outputs)] == [u.pcm for u in finals(clean.outputs)]


def test_a_number_that_never_comes_is_given_up_on_at_the_second_tick(tmp_path, log_capture):
    _, chunks = capture_frames(tmp_path, tmp_path / "unused")
    vad = a_vad(tmp_path)
    for chunk in chunks[:10] + chunks[15:20]:  # 11-15 died in the dead capture's send queue
        vad.send("audio", chunk)
    vad.tick(0)
    assert vad.stage._last_audio_seq == chunks[9].seq  # still waiting: the first tick may be too soon
    vad.tick(0)
    assert vad.stage._last_audio_seq == chunks[19].seq
    assert [e["chunks"] for e in log_capture.entries if e.get("event") == "audio_lost"] == [5]


def test_a_restarted_vad_with_a_full_spool_still_reads_the_replay_start(tmp_path):
    _, chunks = capture_frames(tmp_path, tmp_path / "unused")
    cfg = VadConfig(endpoint="silence", partial_interval_ms=0, speculate_after_ms=0, max_pending=1)
    first = StageDriver(VadStage(cfg, RATE, tmp_path, ["transcribe_cpu"], prob_fn=loudness_vad))
    first.send(CONTROL, frames.Route(active="transcribe_cpu", epoch=1))
    for chunk in chunks:
        first.send("audio", chunk)
    assert len(finals(first.outputs)) == 1  # spooled, never acknowledged: the spool is full
    second = VadStage(cfg, RATE, tmp_path, ["transcribe_cpu"], prob_fn=loudness_vad)
    driver = StageDriver(second)
    [request] = [f for _, f in driver.tick(0) if isinstance(f, frames.ReplayRequest)]
    assert second.accepts("audio")  # backpressure would hold the ReplayStart back behind live audio
    driver.send("audio", frames.ReplayStart(request.from_seq, request.from_seq))
    assert not second.accepts("audio")  # replay under way: backpressure as usual


def test_capture_and_vad_both_killed_mid_utterance_the_file_is_read_again_and_nothing_is_lost(tmp_path):
    run_dir, chunks, reference = clean_reference(tmp_path)

    cfg = AudioConfig(source=str(tmp_path / "speech.wav"), pace="fast")
    first_capture, first_vad = StageDriver(CaptureStage(cfg, run_dir)), a_vad(run_dir)
    middle = int(2.2 * RATE / 512)
    sent = []
    while len(sent) < middle + 40:  # capture runs ahead: what the VAD never got dies in its queue
        sent += [f for _, f in first_capture._emitted(first_capture.stage.produce(0.05))]
    for frame in sent[:middle]:
        first_vad.send("audio", frame)
    assert not finals(first_vad.outputs)  # SIGKILL both now: the utterance is open

    capture = StageDriver(CaptureStage(cfg, run_dir))  # its memory buffer died with its predecessor
    vad = a_vad(run_dir)
    [request] = [f for _, f in vad.tick(0) if isinstance(f, frames.ReplayRequest)]
    for _, frame in capture.send("replay", request):
        vad.send("audio", frame)
    while not capture.stage.exhausted:
        for _, frame in capture._emitted(capture.stage.produce(0.05)):
            vad.send("audio", frame)
    [rebuilt] = finals(vad.outputs)
    assert rebuilt.pcm == reference.pcm  # the same audio, sample for sample
