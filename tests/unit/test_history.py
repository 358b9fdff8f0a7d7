"""The sink's numbered history and a subscriber's catch-up on what PUB/SUB dropped."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

from pipeline import frames
from pipeline.history import CatchUp, TranscriptHistory, read

ROOT = Path(__file__).resolve().parents[2]


def final(utt_id: str) -> frames.Transcript:
    return frames.Transcript(utt_id=utt_id, text=f"texte {utt_id}", language="fr", segments=[], model_used="base",
                             device="cpu", worker="transcribe_cpu", audio_duration_s=1.0, processing_time_s=0.1,
                             rtf=0.1, is_speech=True, t_closed_wall_s=1.0)


def test_finals_are_numbered_kept_and_numbering_goes_on_after_a_restart(tmp_path):
    path = tmp_path / "history.bin"
    history = TranscriptHistory(path)
    assert [history.numbered(final(u)).pub_seq for u in "abc"] == [1, 2, 3]
    history.close()  # a SIGKILL closes it the same way: every record was one write()
    again = TranscriptHistory(path)
    assert again.id == history.id and again.last_seq == 3
    assert again.numbered(final("d")).pub_seq == 4
    assert [(t.utt_id, t.pub_seq) for t in read(path)] == [("a", 1), ("b", 2), ("c", 3), ("d", 4)]


def test_a_record_cut_short_by_a_crash_is_dropped_and_the_rest_kept(tmp_path):
    path = tmp_path / "history.bin"
    history = TranscriptHistory(path)
    for u in "ab":
        history.numbered(final(u))
    history.close()
    path.write_bytes(path.read_bytes()[:-5])
    assert [t.utt_id for t in read(path)] == ["a"]
    assert TranscriptHistory(path).numbered(final("c")).pub_seq == 2


def test_the_file_keeps_the_newest_finals_only(tmp_path):
    path = tmp_path / "history.bin"
    history = TranscriptHistory(path, kept=3)
    for n in range(10):
        history.numbered(final(str(n)))
    assert 3 <= len(read(path)) <= 6 and read(path)[-1].pub_seq == 10


def test_catch_up_fills_a_gap_from_the_file_in_order_and_never_twice(tmp_path):
    path = tmp_path / "history.bin"
    history = TranscriptHistory(path)
    published = [history.numbered(final(u)) for u in "abcde"]
    sub = CatchUp(path, from_start=True)
    assert [t.utt_id for t in sub.receive(published[1])] == ["a", "b"]  # "a" was missed
    assert [t.utt_id for t in sub.receive(published[4])] == ["c", "d", "e"]
    assert sub.receive(published[3]) == [] and sub.receive(published[4]) == []
    assert sub.filled == 3


def test_the_heartbeat_reveals_finals_missed_at_the_end(tmp_path):
    path = tmp_path / "history.bin"
    history = TranscriptHistory(path)
    published = [history.numbered(final(u)) for u in "abc"]
    sub = CatchUp(path)  # only what is new from its first message on
    assert [t.utt_id for t in sub.receive(published[0])] == ["a"]
    assert [t.utt_id for t in sub.receive(frames.History(history.id, 3))] == ["b", "c"]
    assert sub.receive(frames.History(history.id, 3)) == []


def test_a_new_history_after_a_clean_stop_starts_again_from_its_first_final(tmp_path):
    old, new = TranscriptHistory(tmp_path / "old.bin"), TranscriptHistory(tmp_path / "history.bin")
    sub = CatchUp(tmp_path / "history.bin")
    assert sub.receive(frames.History(old.id, 40)) == []  # joined late: nothing old is delivered
    published = [new.numbered(final(u)) for u in "ab"]
    assert [t.utt_id for t in sub.receive(published[1])] == ["a", "b"]


def test_an_unnumbered_final_and_partials_pass_as_they_are(tmp_path):
    sub = CatchUp(tmp_path / "absent.bin")
    assert sub.receive(final("x")) == [final("x")]
    assert sub.receive(dataclasses.replace(final("y"), is_partial=True)) == []


def test_the_example_subscriber_reads_the_same_file_without_this_repository(tmp_path):
    """examples/subscriber.py is plain pyzmq + msgpack: its own reading of the format must agree."""
    spec = importlib.util.spec_from_file_location("subscriber_example", ROOT / "examples" / "subscriber.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    path = tmp_path / "history.bin"
    history = TranscriptHistory(path)
    published = [history.numbered(final(u)) for u in "abcd"]
    numbering = example.Numbering(path)
    assert numbering.missed(history.id, published[0].pub_seq, heard=True) == []  # the first heard: nothing before
    assert [r["utt_id"] for r in numbering.missed(history.id, published[2].pub_seq, heard=True)] == ["b"]
    assert [r["utt_id"] for r in numbering.missed(history.id, 4, heard=False)] == ["d"]  # the beacon
    assert numbering.missed(history.id, 4, heard=False) == []
