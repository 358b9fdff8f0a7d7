"""VadStage in-process: scripted speech probabilities in, utterances out, asserted in milliseconds.

Silero's place is taken by a script of one probability per 32 ms window (512 samples at 16 kHz),
so every boundary below follows from the config: 500 ms of pre-roll (16 windows kept), 120 ms of
silence before the speculative copy (4 windows), 400 ms of silence to close by the fixed rule (13
windows) and 1000 ms at most by the text rule (32 windows), interim text every 400 ms of speech
(13 windows) once the utterance is 600 ms long.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import frames
from pipeline.config import VadConfig
from pipeline.harness.stage_driver import StageDriver, of_kind
from pipeline.runner import CONTROL
from pipeline.speculation import ANSWER_TIMEOUT_S
from stages.vad import VadStage
from tests.fakes import ScriptedVad

WINDOW = 512
WORKERS = ["transcribe_gpu", "transcribe_cpu"]
SILENT, SPEECH = 0.05, 0.9


def ms(samples: int) -> int:
    return round(samples * 1000 / 16000)


class Clock:
    def __init__(self) -> None:
        self.ns = 10**12

    def __call__(self) -> int:
        return self.ns


def vad(tmp_path, probs: list[float], clock=None, **cfg) -> tuple[StageDriver, VadStage]:
    """A routed VadStage. The fixed silence rule unless a test asks for `endpoint="text"`: the
    text rule waits for the worker's verdict, which only the endpointing tests play."""
    cfg = {"endpoint": "silence", **cfg}
    stage = VadStage(VadConfig(**cfg), 16000, tmp_path, WORKERS, prob_fn=ScriptedVad(probs), clock=clock or Clock())
    driver = StageDriver(stage)
    driver.send(CONTROL, frames.Route(active="transcribe_cpu", epoch=1))
    return driver, stage


def play(driver: StageDriver, windows: int, first_seq: int = 1, level: float = 0.01) -> list:
    """`windows` chunks of one window each, at a constant `level` (0.01: -40 dBFS, above the floor)."""
    out = []
    for seq in range(first_seq, first_seq + windows):
        chunk = frames.AudioChunk(seq=seq, t_capture_ns=0, t_capture_wall_s=0.0, sample_rate_hz=16000, channels=1,
                                  pcm=np.full(WINDOW, level, dtype=np.float32).tobytes())
        out += driver.send("audio", chunk)
    return out


def utterances(outputs, port: str) -> list[frames.Utterance]:
    return of_kind(outputs, frames.Utterance, port)


def test_speech_then_silence_gives_a_speculative_copy_then_one_final_with_pre_roll(tmp_path):
    driver, _ = vad(tmp_path, [SILENT] * 20 + [SPEECH] * 40 + [SILENT] * 20)
    out = play(driver, 80)
    sent = utterances(out, "transcribe_cpu")
    speculative, final = sent
    assert speculative.speculative and not final.speculative and not final.is_partial
    # Pre-roll: the 16 windows before the first speech window; the close: 13 silent windows.
    assert round(final.start_s * 1000) == ms(4 * WINDOW) == 128
    assert round((final.end_s - final.start_s) * 1000) == ms((16 + 40 + 13) * WINDOW) == 2208
    assert len(final.pcm) // 4 == (16 + 40 + 13) * WINDOW
    # The copy left after 4 silent windows (128 ms >= 120 ms) and only silence followed it.
    assert len(speculative.pcm) // 4 == (16 + 40 + 4) * WINDOW
    assert speculative.pause_samples == 4 * WINDOW  # where its pause began: a stretch's rest is decoded from there
    assert final.speculated_samples == len(speculative.pcm) // 4 and final.utt_id == speculative.utt_id
    assert not utterances(out, "transcribe_gpu")  # only the routed worker hears anything


class CountingVad(ScriptedVad):
    resets = 0

    def reset(self) -> None:
        self.resets += 1


def test_below_the_silence_floor_silero_is_not_asked_and_starts_clean_afterwards(tmp_path):
    driver, stage = vad(tmp_path, [])
    stage._prob_fn = silero = CountingVad([SPEECH] * 40 + [SILENT] * 20)
    # Digital silence (a muted microphone), then -80 dBFS: both below the -70 dBFS floor.
    out = play(driver, 30, level=0.0) + play(driver, 10, first_seq=31, level=1e-4)
    assert silero.calls == 0 and not utterances(out, "transcribe_cpu")
    out = play(driver, 60, first_seq=41)  # -40 dBFS: Silero hears it, from a clean state
    assert silero.calls == 60 and silero.resets == 1
    assert [u.speculative for u in utterances(out, "transcribe_cpu")] == [True, False]


def test_without_a_silence_floor_every_window_goes_to_silero(tmp_path):
    driver, stage = vad(tmp_path, [SILENT] * 20, silence_floor_dbfs=None)
    play(driver, 20, level=0.0)
    assert stage._prob_fn.calls == 20


def test_partials_every_400_ms_of_speech_never_during_the_closing_silence(tmp_path):
    driver, _ = vad(tmp_path, [SILENT] * 20 + [SPEECH] * 40 + [SILENT] * 20)
    out = play(driver, 80)
    partials = utterances(out, "partial_transcribe_cpu")
    assert all(p.is_partial for p in partials)
    # The first once the utterance (pre-roll included) reaches 600 ms, then every 13 windows.
    assert [ms(len(p.pcm) // 4) for p in partials] == [ms((16 + k) * WINDOW) for k in (3, 16, 29)] == [608, 1024, 1440]
    final = utterances(out, "transcribe_cpu")[-1]
    assert {p.utt_id for p in partials} == {final.utt_id}


def test_speech_resuming_after_the_speculative_copy_cancels_it(tmp_path):
    driver, _ = vad(tmp_path, [SILENT] * 20 + [SPEECH] * 20 + [SILENT] * 6 + [SPEECH] * 20 + [SILENT] * 20)
    [first] = utterances(play(driver, 20 + 20 + 6), "transcribe_cpu")
    assert driver.send("hints", hint(first, False, "no_final_punctuation")) == []  # answered, now stale
    sent = utterances(play(driver, 40, first_seq=47), "transcribe_cpu")
    finals = [u for u in sent if not u.speculative]
    assert len(finals) == 1 and [u.speculative for u in sent] == [True, False]  # one copy per pause
    assert finals[0].speculated_samples == len(sent[0].pcm) // 4  # the second copy, not the first


def test_the_next_pauses_copy_waits_until_the_worker_answered_the_last_one(tmp_path):
    clock = Clock()
    probs = [SILENT] * 20 + ([SPEECH] * 20 + [SILENT] * 6) * 3 + [SPEECH] * 20 + [SILENT] * 20
    driver, _ = vad(tmp_path, probs, clock=clock)
    [first] = utterances(play(driver, 20 + 26), "transcribe_cpu")
    assert utterances(play(driver, 26, first_seq=47), "transcribe_cpu") == []  # the first is not answered
    assert driver.send("hints", hint(first, False, "no_final_punctuation")) == []
    [second] = utterances(play(driver, 26, first_seq=73), "transcribe_cpu")  # the third pause's
    assert second.speculative and len(second.pcm) // 4 > len(first.pcm) // 4
    clock.ns += int(ANSWER_TIMEOUT_S * 1e9) + 1  # the worker never answers it: presumed lost
    sent = utterances(play(driver, 40, first_seq=99), "transcribe_cpu")
    assert [u.speculative for u in sent] == [True, False]
    assert sent[1].speculated_samples == len(sent[0].pcm) // 4


def test_a_new_route_frees_the_copy_the_old_worker_held(tmp_path):
    driver, _ = vad(tmp_path, [SILENT] * 20 + ([SPEECH] * 20 + [SILENT] * 6) * 2)
    assert len(utterances(play(driver, 46), "transcribe_cpu")) == 1
    driver.send(CONTROL, frames.Route(active="transcribe_cpu", epoch=2))  # the worker restarted
    [copy] = utterances(play(driver, 26, first_seq=47), "transcribe_cpu")
    assert copy.speculative


def test_a_route_change_resends_every_unacknowledged_utterance_and_an_ack_ends_it(tmp_path):
    driver, _ = vad(tmp_path, ([SILENT] * 20 + [SPEECH] * 10) * 2 + [SILENT] * 20)
    finals = [u for u in utterances(play(driver, 80), "transcribe_cpu") if not u.speculative]
    assert len(finals) == 2
    driver.send("acks", frames.Ack(utt_id=finals[0].utt_id))
    resent = driver.send(CONTROL, frames.Route(active="transcribe_gpu", epoch=2))  # e.g. the GPU is back
    assert [(port, f.utt_id) for port, f in resent] == [("transcribe_gpu", finals[1].utt_id)]
    driver.send("acks", frames.Ack(utt_id=finals[1].utt_id))
    assert driver.send(CONTROL, frames.Route(active="transcribe_cpu", epoch=3)) == []


def test_an_utterance_without_a_transcript_is_resent_after_resend_after_s(tmp_path):
    clock = Clock()
    driver, _ = vad(tmp_path, [SILENT] * 20 + [SPEECH] * 10 + [SILENT] * 20, clock=clock, resend_after_s=5)
    final = [u for u in utterances(play(driver, 50), "transcribe_cpu") if not u.speculative][0]
    clock.ns += 4_900_000_000
    assert driver.tick(clock.ns) == []
    clock.ns += 200_000_000
    assert [(p, f.utt_id) for p, f in driver.tick(clock.ns)] == [("transcribe_cpu", final.utt_id)]


def test_backpressure_when_max_pending_utterances_wait(tmp_path):
    driver, stage = vad(tmp_path, ([SILENT] * 20 + [SPEECH] * 10) * 2 + [SILENT] * 20, max_pending=2)
    finals = [u for u in utterances(play(driver, 80), "transcribe_cpu") if not u.speculative]
    assert len(finals) == 2 and stage.accepts("audio") is False  # capture now waits; nothing dropped
    assert stage.accepts("acks") is True
    driver.send("acks", frames.Ack(utt_id=finals[0].utt_id))
    assert stage.accepts("audio") is True


def test_a_restarted_vad_sends_its_spooled_utterances_again(tmp_path):
    driver, _ = vad(tmp_path, [SILENT] * 20 + [SPEECH] * 10 + [SILENT] * 20)
    final = [u for u in utterances(play(driver, 50), "transcribe_cpu") if not u.speculative][0]
    # SIGKILL: nothing is closed. The replacement reads the spool and sends it when routed.
    again, _ = vad(tmp_path, [])
    assert [f.utt_id for _, f in again.outputs if isinstance(f, frames.Utterance)] == [final.utt_id]


@pytest.mark.parametrize("pcm", [b"\x00" * 6, np.zeros(20000, dtype=np.float32).tobytes()])
def test_a_chunk_not_from_our_capture_is_refused_and_the_stage_goes_on(tmp_path, pcm):
    driver, _ = vad(tmp_path, [SILENT] * 4)
    bad = frames.AudioChunk(seq=1, t_capture_ns=0, t_capture_wall_s=0.0, sample_rate_hz=16000, channels=1, pcm=pcm)
    assert driver.send("audio", bad) == []
    assert play(driver, 4, first_seq=2) == []


def hint(copy: frames.Utterance, complete: bool, reason: str, end_logprob: float = -0.2,
         turn_probability: float = -1.0) -> frames.TurnHint:
    return frames.TurnHint(utt_id=copy.utt_id, speculated_samples=len(copy.pcm) // 4, complete=complete,
                           reason=reason, end_logprob=end_logprob, turn_probability=turn_probability)


@pytest.mark.parametrize("doubt", [{"end_logprob": -0.9}, {"turn_probability": 0.2},
                                   {"end_logprob": -0.6, "turn_probability": 0.8}])  # Smart Turn not sure enough
def test_a_finished_sentence_either_signal_doubts_waits_hold_silence(tmp_path, doubt):
    probs = [SILENT] * 20 + [SPEECH] * 30 + [SILENT] * 19 + [SPEECH] * 20 + [SILENT] * 40  # a 608 ms pause
    driver, _ = vad(tmp_path, probs, endpoint="text", turn_model_sure_probability=0.9)  # hold_silence_ms: 750
    [copy] = utterances(play(driver, 20 + 30 + 5), "transcribe_cpu")
    assert driver.send("hints", hint(copy, True, "sentence_end", **doubt)) == []
    out = play(driver, 14 + 20 + 40, first_seq=56)
    assert len([u for u in utterances(out, "transcribe_cpu") if not u.speculative]) == 1, "the pause split the turn"


@pytest.mark.parametrize("signals", [{}, {"end_logprob": -0.6, "turn_probability": 0.95}],
                         ids=["decoder sure", "decoder unsure, Smart Turn sure"])
def test_a_finished_sentence_closes_the_turn_as_soon_as_the_worker_says_so(tmp_path, signals):
    driver, _ = vad(tmp_path, [SILENT] * 20 + [SPEECH] * 40 + [SILENT] * 40, endpoint="text",
                    turn_model_sure_probability=0.9)
    [copy] = utterances(play(driver, 20 + 40 + 6), "transcribe_cpu")  # 6 silent windows: 192 ms
    [(port, final)] = driver.send("hints", hint(copy, True, "sentence_end", **signals))
    assert port == "transcribe_cpu" and not final.speculative
    # Closed at the hint, with the silence heard so far: not 400 ms later.
    assert len(final.pcm) // 4 == (16 + 40 + 6) * WINDOW and final.speculated_samples == len(copy.pcm) // 4
    assert utterances(play(driver, 34, first_seq=67), "transcribe_cpu") == []  # nothing left open


def test_an_unfinished_sentence_waits_through_a_hesitation_up_to_max_silence(tmp_path):
    probs = [SILENT] * 20 + [SPEECH] * 30 + [SILENT] * 19 + [SPEECH] * 20 + [SILENT] * 40  # a 608 ms pause
    driver, _ = vad(tmp_path, probs, endpoint="text")
    [copy] = utterances(play(driver, 20 + 30 + 5), "transcribe_cpu")
    assert driver.send("hints", hint(copy, False, "ends_on_function_word")) == []
    out = play(driver, 14 + 20 + 40, first_seq=56)
    finals = [u for u in utterances(out, "transcribe_cpu") if not u.speculative]
    assert len(finals) == 1, "the hesitation split the turn"  # one turn across the 608 ms pause
    # Nobody judged the second pause: it closed at the hard bound, 32 windows (1024 ms >= 1000 ms).
    assert len(finals[0].pcm) // 4 == (16 + 30 + 19 + 20 + 32) * WINDOW


def test_a_stale_verdict_is_ignored_once_speech_resumed(tmp_path):
    driver, _ = vad(tmp_path, [SILENT] * 20 + [SPEECH] * 30 + [SILENT] * 5 + [SPEECH] * 30 + [SILENT] * 40,
                    endpoint="text")
    [copy] = utterances(play(driver, 20 + 30 + 5 + 3), "transcribe_cpu")  # speech is back
    assert driver.send("hints", hint(copy, True, "sentence_end")) == []


def test_the_silence_rule_ignores_verdicts(tmp_path):
    driver, _ = vad(tmp_path, [SILENT] * 20 + [SPEECH] * 30 + [SILENT] * 40)
    [copy] = utterances(play(driver, 20 + 30 + 6), "transcribe_cpu")
    assert driver.send("hints", hint(copy, True, "sentence_end")) == []
    finals = [u for u in utterances(play(driver, 20, first_seq=57), "transcribe_cpu") if not u.speculative]
    assert [len(u.pcm) // 4 for u in finals] == [(16 + 30 + 13) * WINDOW]


def test_an_utterance_the_runner_could_not_hand_over_is_sent_again_at_the_next_tick(tmp_path):
    clock = Clock()
    _, stage = vad(tmp_path, [SILENT] * 20 + [SPEECH] * 10 + [SILENT] * 20, clock=clock)
    out = []
    for seq in range(1, 51):  # handled, but never acknowledged as sent: no worker was connected
        out += stage.handle("audio", frames.AudioChunk(seq=seq, t_capture_ns=0, t_capture_wall_s=0.0,
                                                       sample_rate_hz=16000, channels=1,
                                                       pcm=np.full(WINDOW, 0.01, dtype=np.float32).tobytes()))
    [final] = [f for _, f in out if isinstance(f, frames.Utterance) and not (f.speculative or f.is_partial)]
    clock.ns += 1_000_000_000
    assert [(p, f.utt_id) for p, f in stage.tick(clock.ns)] == [("transcribe_cpu", final.utt_id)]
    stage.sent("transcribe_cpu", final)  # this time it left
    assert stage.tick(clock.ns + 1_000_000_000) == []


def test_while_draining_an_unanswered_utterance_is_sent_again_after_a_few_seconds(tmp_path):
    clock = Clock()
    driver, _ = vad(tmp_path, [SILENT] * 20 + [SPEECH] * 10 + [SILENT] * 20, clock=clock, resend_after_s=60)
    final = [u for u in utterances(play(driver, 50), "transcribe_cpu") if not u.speculative][0]
    driver.drain()  # SIGTERM: the VAD may exit only once everything is acknowledged
    clock.ns += 4_000_000_000
    assert driver.tick(clock.ns) == []
    clock.ns += 2_000_000_000
    assert [(p, f.utt_id) for p, f in driver.tick(clock.ns)] == [("transcribe_cpu", final.utt_id)]


def request(utt_id: str, **kind) -> frames.Utterance:
    """A front door's turn (stages/wyoming.py), 1 s of audio."""
    return frames.Utterance(utt_id, 0.0, 1.0, 0.0, 16000, np.zeros(16000, dtype=np.float32).tobytes(),
                            language="fr", **kind)


def test_a_front_door_turn_is_spooled_routed_and_sent_again_like_the_vads_own(tmp_path):
    driver, stage = vad(tmp_path, [])
    sent = driver.send("requests", request("wyab-000001"))
    assert [(p, f.utt_id, f.language) for p, f in sent] == [("transcribe_cpu", "wyab-000001", "fr")]
    assert driver.send("requests", request("wyab-000001")) == []  # sent again by the door: pending already
    moved = driver.send(CONTROL, frames.Route(active="transcribe_gpu", epoch=2))  # a failover
    assert [(p, f.utt_id) for p, f in moved] == [("transcribe_gpu", "wyab-000001")]
    restarted = VadStage(VadConfig(endpoint="silence"), 16000, tmp_path, WORKERS, prob_fn=ScriptedVad([]))
    after = StageDriver(restarted).send(CONTROL, frames.Route(active="transcribe_cpu", epoch=3))
    assert [f.utt_id for _, f in after] == ["wyab-000001"]  # the spool kept it across a VAD crash
    driver.send("acks", frames.Ack("wyab-000001"))
    assert not stage.delivery.pending


def test_a_front_doors_copies_go_straight_to_the_routed_worker(tmp_path):
    driver, stage = vad(tmp_path, [])
    spec = driver.send("requests", request("wyab-000002", speculative=True))
    partial = driver.send("requests", request("wyab-000002", is_partial=True))
    assert [p for p, _ in spec + partial] == ["transcribe_cpu", "partial_transcribe_cpu"]
    assert not stage.delivery.pending  # copies are never held: the final is


def test_front_door_turns_wait_when_max_pending_are_held(tmp_path):
    driver, stage = vad(tmp_path, [], max_pending=1)
    driver.send("requests", request("wyab-000003"))
    assert not stage.accepts("requests") and not stage.accepts("audio")
    driver.send("acks", frames.Ack("wyab-000003"))
    assert stage.accepts("requests")


def test_a_second_lanes_vad_has_its_own_sockets_state_and_source_label(tmp_path):
    from pipeline import topology

    stage = VadStage(VadConfig(endpoint="silence"), 16000, tmp_path, WORKERS,
                     prob_fn=ScriptedVad([SPEECH] * 40 + [SILENT] * 20), clock=Clock(), source="mic:salon", lane=1)
    assert stage.name == "vad.1" and "requests" not in stage.inputs  # front doors talk to lane 0
    assert stage.inputs["audio"].endpoint == topology.audio(tmp_path, 1) != topology.audio(tmp_path)
    assert stage.outputs["transcribe_cpu"].endpoint == topology.utterances(tmp_path, "transcribe_cpu", 1)
    driver = StageDriver(stage)
    driver.send(CONTROL, frames.Route(active="transcribe_cpu", epoch=1))
    [final] = [u for u in utterances(play(driver, 60), "transcribe_cpu") if not u.speculative]
    assert final.source == "mic:salon"
    assert (topology.vad_spool(tmp_path, 1) / f"{final.utt_id}.msgpack").exists()  # its own spool
    assert not topology.vad_spool(tmp_path).exists()
