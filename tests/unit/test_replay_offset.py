"""The VAD's committed offset (pipeline/replay.py): written at once the first time and after every
close, otherwise at most every COMMIT_EVERY_SAMPLES of audio (each write is an atomic rename, which showed in
idle CPU); an older offset is always safe, it only replays more silence."""

from __future__ import annotations

from pipeline.durable import Cursor
from pipeline.replay import COMMIT_EVERY_SAMPLES, ReplayOffset

CHUNK = 512
COMMIT_EVERY = COMMIT_EVERY_SAMPLES // CHUNK  # in 32 ms chunks


def feed(offset: ReplayOffset, first: int, count: int, now_at: int | None = None) -> None:
    """Chunks first..first+count-1 seen; after each, everything but the last chunk is accounted for."""
    for seq in range(first, first + count):
        offset.seen(seq, seq * CHUNK)
        offset.commit((seq - 1) * CHUNK, now=seq == now_at)


def saved(path) -> int | None:
    return (Cursor(path).load() or {}).get("seq")


def test_the_first_offset_is_written_at_once_then_at_most_every_commit_every_chunks(tmp_path):
    path = tmp_path / "vad_offset.json"
    offset = ReplayOffset(path, keep_chunks=4 * COMMIT_EVERY)
    feed(offset, 1, 1)
    assert saved(path) == 1  # a VAD killed in its first second is replayed from here
    feed(offset, 2, COMMIT_EVERY - 1)
    assert saved(path) == 1  # silence: the older offset stands (more silence replayed, nothing lost)
    feed(offset, COMMIT_EVERY + 1, 1)
    assert saved(path) == COMMIT_EVERY + 1


def test_a_close_commits_at_once(tmp_path):
    path = tmp_path / "vad_offset.json"
    offset = ReplayOffset(path, keep_chunks=4 * COMMIT_EVERY)
    feed(offset, 1, 1)
    feed(offset, 2, 5, now_at=6)
    assert saved(path) == 6  # the closed utterance is behind the offset: never replayed twice
    assert ReplayOffset(path, keep_chunks=1).restore(spooled_end_seqs=[]) == 6


def test_long_chunks_commit_by_the_audio_they_hold_not_by_their_number(tmp_path):
    path, burst = tmp_path / "vad_offset.json", 16 * CHUNK  # a quiet microphone's bursts: 512 ms each
    offset = ReplayOffset(path, keep_chunks=100)
    for seq in range(1, 12):
        offset.seen(seq, seq * burst)
        offset.commit((seq - 1) * burst)
    assert saved(path) == 11  # 10 bursts (5.1 s) after the first commit: written again, not after 160 bursts
