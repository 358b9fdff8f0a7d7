"""The file source: every sample played once in order, and again in order when it loops."""

from __future__ import annotations

import numpy as np
import soundfile

from pipeline.sources import FileSource, SourceEvent

FRAME = 512


def _write(path, seconds: float, seed: int) -> np.ndarray:
    audio = np.random.default_rng(seed).uniform(-0.5, 0.5, int(seconds * 16000)).astype(np.float32)
    soundfile.write(path, audio, 16000, subtype="FLOAT")
    return audio


def _drain(source: FileSource, reads: int) -> list:
    out = []
    for _ in range(reads):
        out += source.read(0.1)
    return out


def test_a_looping_source_plays_its_files_again_in_order_and_never_ends(tmp_path):
    a, b = _write(tmp_path / "a.wav", 0.5, 1), _write(tmp_path / "b.wav", 0.3, 2)
    source = FileSource(tmp_path, FRAME, 16000, realtime=False, max_s=60, loop=True)
    items = _drain(source, 40)
    events = [i.kind for i in items if isinstance(i, SourceEvent)]
    assert "end" not in events and events.count("next_file") >= 3 and not source.finished
    # Between two events lies one whole file, zero-padded to whole frames: a, b, a, b, ...
    runs: list[list[np.ndarray]] = [[]]
    for item in items:
        if isinstance(item, SourceEvent):
            runs.append([])
        else:
            runs[-1].append(item)
    for i, run in enumerate(runs[:4]):
        expected = a if i % 2 == 0 else b
        np.testing.assert_array_equal(np.concatenate(run)[:expected.size], expected)


def test_without_loop_the_source_ends_after_the_last_file(tmp_path):
    _write(tmp_path / "a.wav", 0.2, 1)
    source = FileSource(tmp_path / "a.wav", FRAME, 16000, realtime=False, max_s=60)
    items = _drain(source, 4)
    assert [i.kind for i in items if isinstance(i, SourceEvent)] == ["end"] and source.finished


def test_a_loop_with_no_playable_file_ends_instead_of_spinning(tmp_path):
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    source = FileSource(tmp_path, FRAME, 16000, realtime=False, max_s=60, loop=True)
    kinds = [i.kind for i in _drain(source, 4) if isinstance(i, SourceEvent)]
    assert kinds == ["bad_file", "end"] and source.finished


def test_a_rewind_at_real_time_pace_replays_what_was_played_without_waiting_for_it_again(tmp_path, fake_clock):
    audio = _write(tmp_path / "a.wav", 2.0, seed=4)
    source = FileSource(tmp_path / "a.wav", FRAME, 16000, realtime=True, max_s=60, clock=fake_clock,
                        sleep=lambda s: None)
    played = []
    for _ in range(40):
        fake_clock.advance(FRAME / 16000)
        played += [b for b in source.read(0.1) if isinstance(b, np.ndarray)]
    checkpoint = {"file_index": 0, "offset": 10 * FRAME}
    assert source.rewind(checkpoint, catch_up_samples=(len(played) - 10) * FRAME) == []  # no event repeated
    again = [b for _ in range(len(played) - 10) for b in source.read(0.1)]  # the clock stands still
    assert len(again) == len(played) - 10
    np.testing.assert_array_equal(np.concatenate(again), audio[10 * FRAME:len(played) * FRAME])
    source.read(0.1)  # the one due at this very instant
    assert source.read(0.1) == []  # then real time again: the next chunk is not due yet
