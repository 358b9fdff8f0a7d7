"""The CI version of `python -m bench.fuzz`: hostile frames into real stage processes, hostile
audio files through the real model and the file source. Nothing may crash; every malformed frame
is counted once in the stage's metrics and logged once; every refused file is counted."""

from __future__ import annotations

import pytest

from bench.fuzz import fuzz_audio, fuzz_stages

FRAMES_PER_SOCKET = 150
AUDIO_FILES = 120


@pytest.mark.slow
def test_every_stage_socket_survives_and_counts_hostile_frames(run_dir):
    rows = fuzz_stages(run_dir, FRAMES_PER_SOCKET)
    assert {(r["stage"], r["port"]) for r in rows} == {
        ("sink", "results"), ("sink", "_control_down"), ("vad", "audio"), ("vad", "requests"),
        ("dispatch", "pool"), ("dispatch", "transcribe_cpu"), ("transcribe_cpu", "dispatch")}
    for row in rows:
        assert row["same_pid"] and row["handled"] == row["sent"] == FRAMES_PER_SOCKET, row
        assert row["counted_malformed"] == row["logged_malformed"] == row["malformed"] > 0, row


@pytest.mark.slow
def test_hostile_audio_files_are_transcribed_or_refused_with_a_typed_error(tmp_path):
    tally = fuzz_audio(AUDIO_FILES, tmp_path)
    assert tally["files"] == AUDIO_FILES
    assert tally["transcribed"] + tally["refused"] == AUDIO_FILES and tally["refused"] > 0, tally
    assert tally["counted_refused"] == tally["refused"], tally
    assert tally["source_refused"] == tally["refused"], tally  # same decoder, same verdict
