"""A restarted capture stage carries on from its cursor instead of replaying its files."""

from __future__ import annotations

import numpy as np
import soundfile

from pipeline import frames
from pipeline.config import AudioConfig
from stages.capture import CaptureStage


def _audio_frames(outputs) -> list:
    return [f for _, f in outputs]


def test_restart_reads_the_file_again_from_a_checkpoint_under_the_same_numbers(tmp_path):
    audio = np.random.default_rng(0).uniform(-0.5, 0.5, 16000).astype(np.float32)
    soundfile.write(tmp_path / "a.wav", audio, 16000, subtype="FLOAT")
    cfg = AudioConfig(source=str(tmp_path / "a.wav"), pace="fast")
    first = CaptureStage(cfg, tmp_path)
    first.start()
    first.produce(0.0)  # opens the file
    sent = [f for f in _audio_frames(first.produce(0.1)) if isinstance(f, frames.AudioChunk)]
    assert 0 < len(sent) < 16000 // 512
    # The runner flushes a batch before asking for the next: this call records the cursor first,
    # and what it returns is still in the outbox when the process is killed.
    first.produce(0.0)

    second = CaptureStage(cfg, tmp_path)  # SIGKILL, then the supervisor activates the spare
    second.preload()  # long before: the spare lists and decodes the file while it stands by
    (tmp_path / "a.wav").rename(tmp_path / "moved.wav")  # so resuming cannot have read it again
    second.start()
    resumed = [f for _ in range(4) for f in _audio_frames(second.produce(0.1))]
    assert not any(isinstance(f, frames.CaptureGap) for f in resumed)  # a file loses nothing: no gap
    # Read again from a checkpoint under the same numbers (the VAD drops those it heard), and the
    # chunk that never left the killed process is there, from the file: nothing skipped.
    chunks = {f.seq: f for f in resumed if isinstance(f, frames.AudioChunk)}
    assert all(chunks[f.seq].pcm == f.pcm for f in sent if f.seq in chunks)
    lost = chunks[sent[-1].seq + 1]
    np.testing.assert_array_equal(np.frombuffer(lost.pcm, np.float32), audio[len(sent) * 512:len(sent) * 512 + 512])


def test_a_microphones_cursor_is_saved_at_most_twice_a_second(tmp_path, fake_clock):
    from pipeline.durable import Cursor
    from pipeline.topology import capture_cursor

    stage = CaptureStage(AudioConfig(), tmp_path, clock=fake_clock)
    stage.source = object()  # a live device: only the chunk number and the wall time are kept
    saved = lambda: Cursor(capture_cursor(tmp_path)).load()["seq"]  # noqa: E731
    stage._seq = 10
    stage._save_cursor()
    stage._seq = 11
    fake_clock.advance(0.4)
    stage._save_cursor()
    assert saved() == 10  # a file write per 32 ms chunk is not worth it for a microphone
    fake_clock.advance(0.2)
    stage._save_cursor()
    assert saved() == 11
