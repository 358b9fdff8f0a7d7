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
