"""The durable state under real file-system faults: a stage never stops, nothing it holds is lost.

The faults are the kernel's own (no mocked file objects): a spool directory replaced by a file or
deleted, a full tmpfs (root only: it is mounted for the test), a truncated spool entry, a
truncated cursor, a published-ids file and a history whose directory vanished.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from pipeline import frames, topology
from pipeline.durable import Cursor, IdLog
from pipeline.history import TranscriptHistory, read
from tests.stage.test_sink_stage import transcript
from tests.stage.test_vad_stage import SILENT, SPEECH, play, utterances, vad

SPEECH_THEN_SILENCE = [SILENT] * 20 + [SPEECH] * 10 + [SILENT] * 20


def finals(outputs) -> list[frames.Utterance]:
    return [u for u in utterances(outputs, "transcribe_cpu") if not u.speculative]


def test_a_spool_that_cannot_be_written_is_counted_and_the_utterance_still_goes(tmp_path):
    driver, stage = vad(tmp_path, SPEECH_THEN_SILENCE * 2)
    spool = topology.vad_spool(tmp_path)
    shutil.rmtree(spool)
    spool.write_text("not a directory")  # every write into it now fails (ENOTDIR / EEXIST)
    sent = finals(play(driver, 50))
    assert len(sent) == 1 and sent[0].utt_id in stage.delivery.pending  # sent, and held in memory until acknowledged
    assert stage.delivery.spool.health.failing
    spool.unlink()  # the disk is back: the next write makes the directory again
    sent = finals(play(driver, 50, first_seq=51))
    assert (spool / f"{sent[0].utt_id}.msgpack").exists() and not stage.delivery.spool.health.failing


def test_a_deleted_spool_directory_is_made_again(tmp_path):
    driver, _ = vad(tmp_path, SPEECH_THEN_SILENCE)
    shutil.rmtree(topology.vad_spool(tmp_path))
    sent = finals(play(driver, 50))
    assert (topology.vad_spool(tmp_path) / f"{sent[0].utt_id}.msgpack").exists()


@pytest.fixture
def full_disk(tmp_path):
    """A 1 MiB tmpfs, filled up: writes fail with ENOSPC until `free()`."""
    mount = tmp_path / "tiny"
    mount.mkdir(mode=0o700)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mount)],
                      capture_output=True, check=False).returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    filler = mount / "filler"
    try:
        with open(filler, "wb", buffering=0) as f, pytest.raises(OSError):
            while True:
                f.write(b"\0" * 4096)
        yield mount, filler.unlink
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_under_the_run_dir_loses_no_utterance(full_disk):
    run_dir, free = full_disk
    driver, stage = vad(run_dir, SPEECH_THEN_SILENCE * 2)
    sent = finals(play(driver, 50))
    assert len(sent) == 1 and sent[0].utt_id in stage.delivery.pending and stage.delivery.spool.health.failing
    free()
    sent += finals(play(driver, 50, first_seq=51))
    assert not stage.delivery.spool.health.failing
    assert (topology.vad_spool(run_dir) / f"{sent[1].utt_id}.msgpack").exists()


def test_a_truncated_spool_entry_is_dropped_and_the_others_are_sent_again(tmp_path):
    driver, _ = vad(tmp_path, SPEECH_THEN_SILENCE * 2)
    first, second = finals(play(driver, 100))
    damaged = topology.vad_spool(tmp_path) / f"{first.utt_id}.msgpack"
    damaged.write_bytes(damaged.read_bytes()[:40])  # a torn write, or a bad disk
    again, restarted = vad(tmp_path, [])  # a replacement VAD reads the spool
    assert [f.utt_id for f in finals(again.outputs)] == [second.utt_id]
    assert not damaged.exists() and list(restarted.delivery.pending) == [second.utt_id]


def test_a_truncated_cursor_means_a_fresh_start_not_a_crash(tmp_path):
    cursor = Cursor(tmp_path / "capture_cursor.json")
    cursor.save({"seq": 12, "wall_s": 1.0})
    cursor.path.write_text('{"seq": 1')
    assert cursor.load() is None
    shutil.rmtree(tmp_path)
    assert cursor.save({"seq": 13}) is False and cursor.health.failing


def test_published_ids_that_cannot_be_written_are_kept_and_written_back_whole(tmp_path):
    folder = tmp_path / "run"  # missing: the run dir was deleted under the sink
    ids = IdLog(folder / "sink_published.ids", limit=100)
    ids.add("a")
    ids.add("b")
    assert "a" in ids and "b" in ids and ids.health.failing  # the sink still drops duplicates
    folder.mkdir()
    ids.add("c")  # writes work again: the file comes back with every id held
    assert (folder / "sink_published.ids").read_text().split() == ["a", "b", "c"] and not ids.health.failing


def test_a_history_that_cannot_be_written_keeps_numbering_and_is_written_back_whole(tmp_path):
    folder = tmp_path / "run"  # missing: the run dir was deleted under the sink
    kept = TranscriptHistory(folder / "history.bin")
    first = kept.numbered(transcript("a"))
    assert first.pub_seq == 1 and kept.health.failing  # still numbered and published: counted, logged
    folder.mkdir()
    kept.numbered(transcript("b"))  # writes work again: the file comes back with every final held
    assert [(t.utt_id, t.pub_seq) for t in read(folder / "history.bin")] == [("a", 1), ("b", 2)]
    assert not kept.health.failing
